import assert from 'assert/strict';
import { spawn } from 'child_process';
import path from 'path';

// Runs in a child so that "the process can exit" is what is observed.
const child = `
const { LockManager } = require(process.argv[1]);
const locks = new LockManager({
  external: { apply: async (_ino, request) => request.type === 2 },
  externalRetry: { initialMs: 5, maxMs: 20 },
});
const request = { family: 'posix', owner: 1n, fh: 1, pid: 1, type: 1, start: 0n, end: 0x7fffffffffffffffn };
locks.set(1, request, true).done.catch((error) => process.stdout.write(error.code));
setTimeout(() => locks.dispose(), 100);
`;

describe('locks: dispose', () => {
  it('clears the retry timers so the process exits', async () => {
    const modulePath = path.join(__dirname, '../../src/locks');
    const proc = spawn(process.execPath, ['-e', child, modulePath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    proc.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exit = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        proc.kill();
        resolve('still running after 5 s');
      }, 5000);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code ?? 'killed');
      });
    });
    assert.equal(exit, 0);
    assert.equal(output, 'EINTR');
  });
});
