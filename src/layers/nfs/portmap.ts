// Portmapper v2 (RFC 1833 §3): asks the server's port 111 where an RPC program listens.

import { smallServiceClient, type RpcClient } from './rpc';

export const PORTMAP_PORT = 111;
const PMAP_PROGRAM = 100000;
const PMAP_VERSION = 2;
const PMAPPROC_SET = 1;
const PMAPPROC_UNSET = 2;
const PMAPPROC_GETPORT = 3;
const IPPROTO_TCP = 6;

export class PortmapError extends Error {
  readonly code = 'EPROTONOSUPPORT';
  constructor(message: string) {
    super(message);
    this.name = 'PortmapError';
  }
}

export interface PortmapQueryOptions {
  timeoutMs: number;
  retrans: number;
  privilegedPort: boolean;
}

export interface ProgramQuery {
  program: number;
  version: number;
  /** Names the program in the error when it is not registered. */
  name: string;
}

function portmapClient(host: string, options: PortmapQueryOptions): RpcClient {
  return smallServiceClient({ host, port: PORTMAP_PORT, target: { program: PMAP_PROGRAM, version: PMAP_VERSION }, label: 'portmap', ...options });
}

/**
 * Registers (port > 0) or unregisters (port 0) a program's TCP port with the portmapper on
 * this host (it takes SET and UNSET from local privileged callers only). False when refused:
 * another registration of the program is in place.
 */
export async function registerTcpPort(program: number, version: number, port: number, options: PortmapQueryOptions): Promise<boolean> {
  const rpc = portmapClient('127.0.0.1', options);
  try {
    const reply = await rpc.call(port > 0 ? PMAPPROC_SET : PMAPPROC_UNSET, (w) => w.uint32(program).uint32(version).uint32(IPPROTO_TCP).uint32(port));
    return reply.bool();
  } finally {
    rpc.close();
  }
}

/** Looks up the TCP ports of several programs over one short-lived connection; fails if any is unregistered. */
export async function getTcpPorts(host: string, queries: readonly ProgramQuery[], options: PortmapQueryOptions): Promise<number[]> {
  const rpc = portmapClient(host, options);
  try {
    return await Promise.all(
      queries.map(async ({ program, version, name }) => {
        const reply = await rpc.call(PMAPPROC_GETPORT, (w) => w.uint32(program).uint32(version).uint32(IPPROTO_TCP).uint32(0));
        const port = reply.uint32();
        if (port === 0 || port > 0xffff) {
          throw new PortmapError(`${name} (program ${program} v${version} over TCP) is not registered with the portmapper on ${host}`);
        }
        return port;
      }),
    );
  } finally {
    rpc.close();
  }
}
