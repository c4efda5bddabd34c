import assert from 'assert/strict';
import { Op } from '../../src/fuse/abi';
import { NO_REPLY, OPCODES, type OpName } from '../../src/fuse/opcodes';

describe('FUSE opcode table', () => {
  it('has one entry per opcode of the ABI', () => {
    const names = Object.keys(Op)
      .filter((k) => Number.isNaN(Number(k)))
      .sort();
    assert.deepEqual(Object.keys(OPCODES).sort(), names);
  });

  it('derives the opcodes answered by no reply', () => {
    assert.deepEqual(
      [...NO_REPLY].sort((a, b) => a - b),
      [Op.FORGET, Op.INTERRUPT, Op.NOTIFY_REPLY, Op.BATCH_FORGET],
    );
  });

  it('serves every replying opcode but INIT and INTERRUPT through a handler method', () => {
    const byHandler = (Object.keys(OPCODES) as OpName[]).filter((n) => OPCODES[n].kind === 'handler');
    const unnamed = byHandler.filter((n) => {
      const e = OPCODES[n];
      return e.kind === 'handler' && !e.method;
    });
    assert.deepEqual(unnamed, ['SETUPMAPPING', 'REMOVEMAPPING']);
    const bySession = (Object.keys(OPCODES) as OpName[]).filter((n) => OPCODES[n].kind === 'session');
    assert.deepEqual(bySession.sort(), ['INIT', 'INTERRUPT']);
  });
});
