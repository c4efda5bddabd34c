// The NLM service a client runs for its servers' callbacks: when a lock a client asked for
// with block=true becomes free, the server sends GRANTED_MSG to the NLM program registered
// with the portmapper on the client's host (found through the caller_name the LOCK carried).
// One per process and local address, registered while some NLM client of the process uses it.
// Only one program can be registered per host: the daemon registered passes callbacks that are
// not for it on to the host's other daemons (nlm-callback-peers.ts). Where that cannot be (a
// process other than ovshift serves NLM here, or no private directory for the peers), waiters
// find their locks by retrying.

import createDebug from 'debug';
import { decodeGranted, NLM_PROGRAM, NLM_VERSION, Nlm4Proc, type NlmGranted } from './nlm4';
import { CallbackPeers, REGISTRATION_GONE } from './nlm-callback-peers';
import { getTcpPorts, registerTcpPort } from './portmap';
import { smallServiceClient } from './rpc';
import { RpcService, type RpcHandler } from './rpc-service';
import type { XdrReader } from './xdr';

const log = createDebug('ovshift:nlm');

/** Who takes the callbacks for the locks a client waits for: true if the grant was for it. */
export type GrantListener = (granted: NlmGranted, peer: string) => boolean;

const PORTMAP_OPTIONS = { timeoutMs: 2000, retrans: 1, privilegedPort: process.getuid?.() === 0 };

/** Is something answering NLM NULL on this port? */
async function answers(port: number): Promise<boolean> {
  const rpc = smallServiceClient({
    host: '127.0.0.1',
    port,
    target: { program: NLM_PROGRAM, version: NLM_VERSION },
    label: 'nlm-probe',
    timeoutMs: 1000,
    retrans: 0,
    privilegedPort: false,
  });
  try {
    await rpc.call(Nlm4Proc.NULL);
    return true;
  } catch {
    return false;
  } finally {
    rpc.close();
  }
}

class CallbackService {
  /** This process's port is the one the portmapper gives for NLM. */
  private registered = false;

  private constructor(
    readonly listeners: Set<GrantListener>,
    /** Told when the daemon whose registration passed callbacks on left. */
    readonly rewaiters: Set<() => void>,
    private readonly service: RpcService,
    private readonly peers: CallbackPeers | undefined,
  ) {}

  static async start(address: string): Promise<CallbackService> {
    const listeners = new Set<GrantListener>();
    /** Whether a listener took the grant. Its answer goes back as a call of its own (GRANTED_RES). */
    const deliver = (args: XdrReader, peer: string): boolean => {
      const grant = decodeGranted(args);
      log('GRANTED callback from %s for svid %d', peer, grant.lock.svid);
      let taken = false;
      for (const listener of listeners) taken = listener(grant, peer) || taken;
      return taken;
    };
    const passOn: { to?: CallbackPeers } = {};
    const fromServer: RpcHandler = (args, peer, call) => {
      if (!deliver(args, peer)) passOn.to?.forward(call);
      return null;
    };
    const service = await RpcService.listen({ host: address }, NLM_PROGRAM, NLM_VERSION, new Map([[Nlm4Proc.GRANTED_MSG, fromServer]]));
    const fromPeer: RpcHandler = (args, peer) => (deliver(args, peer), null);
    const rewaiters = new Set<() => void>();
    const registrationGone: RpcHandler = () => {
      log("the daemon that held this host's NLM registration left: waiters ask again");
      for (const rewait of rewaiters) rewait();
      return null;
    };
    passOn.to = await CallbackPeers.open(
      service.port,
      NLM_PROGRAM,
      NLM_VERSION,
      new Map([
        [Nlm4Proc.GRANTED_MSG, fromPeer],
        [REGISTRATION_GONE, registrationGone],
      ]),
    );
    return new CallbackService(listeners, rewaiters, service, passOn.to);
  }

  /**
   * Whether callbacks reach this process now: its port is registered (taking over a
   * registration nothing answers on any more, a killed process's), or another daemon's is and
   * passes them on. Asked before each wait: the registered daemon may have gone meanwhile.
   */
  async receiving(): Promise<boolean> {
    if (this.registered) return true;
    try {
      this.registered = await registerTcpPort(NLM_PROGRAM, NLM_VERSION, this.service.port, PORTMAP_OPTIONS);
      if (this.registered) return true;
      const [current] = await getTcpPorts('127.0.0.1', [{ program: NLM_PROGRAM, version: NLM_VERSION, name: 'NLM' }], PORTMAP_OPTIONS);
      if (current !== undefined && (await answers(current))) {
        const throughPeer = this.peers?.serves(current) ?? false;
        log(
          'NLM is served on this host by another process (port %d)%s',
          current,
          throughPeer ? ', an ovshift daemon that passes callbacks on' : ': no callbacks here',
        );
        return throughPeer;
      }
      await registerTcpPort(NLM_PROGRAM, NLM_VERSION, 0, PORTMAP_OPTIONS);
      this.registered = await registerTcpPort(NLM_PROGRAM, NLM_VERSION, this.service.port, PORTMAP_OPTIONS);
      return this.registered;
    } catch (err) {
      log('cannot register for NLM callbacks: %s', (err as Error).message);
      return false;
    }
  }

  async stop(): Promise<void> {
    this.service.close();
    if (this.registered) {
      await registerTcpPort(NLM_PROGRAM, NLM_VERSION, 0, PORTMAP_OPTIONS).catch(() => false);
      // Whatever waits in the other daemons through this registration is asked for again,
      // and one of them registers.
      this.peers?.announceGone(NLM_PROGRAM, NLM_VERSION);
    }
    this.peers?.close();
  }
}

const services = new Map<string, Promise<CallbackService>>();

/** The callbacks one NLM client of the process takes. */
export interface GrantSubscription {
  /** Whether callbacks reach this process now (ask before each wait). */
  receiving(): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * Listens for GRANTED callbacks reaching `address` (one service per process and address);
 * `rewait` is called when callbacks that came through another daemon stop coming.
 */
export async function listenForGrants(address: string, listener: GrantListener, rewait: () => void): Promise<GrantSubscription> {
  let starting = services.get(address);
  if (starting === undefined) {
    starting = CallbackService.start(address);
    services.set(address, starting);
    starting.catch(() => services.delete(address));
  }
  const service = await starting;
  service.listeners.add(listener);
  service.rewaiters.add(rewait);
  return {
    receiving: () => service.receiving(),
    stop: async () => {
      service.listeners.delete(listener);
      service.rewaiters.delete(rewait);
      if (service.listeners.size > 0 || services.get(address) !== starting) return;
      services.delete(address);
      await service.stop();
    },
  };
}
