/**
 * Reads and writes on layer files: on the event loop when the kernel can do them without
 * waiting (RWF_NOWAIT: the bytes are in the page cache, the write needs no disk), otherwise on
 * the thread pool. A thread round trip costs more than copying a megabyte from the page cache,
 * and a read that must wait for a disk never stalls the loop.
 */
import * as fs from 'fs';
import { constants as os } from 'os';
import { C, native } from '../native';
import { errnoError } from '../util/errno';

const RWF_NOWAIT = C.RWF_NOWAIT!;
const { EAGAIN, EOPNOTSUPP } = os.errno;

/** The call would have waited, or the file cannot say so: do it on the thread pool. */
function wouldWait(res: number): boolean {
  return res === -EAGAIN || res === -EOPNOTSUPP;
}

export function readAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  let done = 0;
  // A short read is the end of the file or the end of what is in memory; one more try tells.
  for (let tries = 0; tries < 2 && done < length; tries++) {
    const res = native.preadv2Sync(fd, buf, offset + done, length - done, position + done, RWF_NOWAIT);
    if (res === 0) return Promise.resolve(done);
    if (res < 0) {
      if (!wouldWait(res)) return Promise.reject(errnoError(res, 'read'));
      break;
    }
    done += res;
  }
  if (done === length) return Promise.resolve(done);
  return threadRead(fd, buf, offset + done, length - done, position + done).then((n) => done + n);
}

/** inMemory: the file is on tmpfs or ramfs, whose writes never wait for a disk (nor say so). */
export function writeAt(fd: number, buf: Buffer, offset: number, length: number, position: number, inMemory: boolean): Promise<number> {
  const res = native.pwritev2Sync(fd, buf, offset, length, position, inMemory ? 0 : RWF_NOWAIT);
  if (res === length) return Promise.resolve(res);
  if (res < 0 && !wouldWait(res)) return Promise.reject(errnoError(res, 'write'));
  const done = Math.max(res, 0);
  return threadWrite(fd, buf, offset + done, length - done, position + done).then((n) => done + n);
}

/**
 * close(): on the loop for files of local filesystems, where it returns at once; on the thread
 * pool for network ones, where it may flush to the server first.
 */
export function closeFd(fd: number, onLoop: boolean): Promise<void> {
  if (!onLoop) return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
  try {
    fs.closeSync(fd);
    return Promise.resolve();
  } catch (err) {
    return Promise.reject(err);
  }
}

function threadRead(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function threadWrite(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}
