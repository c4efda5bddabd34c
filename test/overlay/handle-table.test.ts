/**
 * The handle table nfs_export=on keeps in the workdir is overlay metadata anyone with access to
 * the workdir could have written: every entry is checked before any is used.
 */
import assert from 'assert/strict';
import { parseHandles } from '../../src/overlay/handle-table';

const good = {
  version: 1,
  generation: 7,
  nextId: 10,
  nodes: [
    [2, 1, 'dir', 'i2'],
    [3, 2, 'file', 'i3'],
  ],
};

function parse(table: unknown): string {
  const r = parseHandles(Buffer.from(typeof table === 'string' ? table : JSON.stringify(table)));
  return r instanceof Error ? r.message : 'ok';
}

describe('overlay: the saved handle table', () => {
  it('takes a sound table', () => {
    assert.deepEqual(parseHandles(Buffer.from(JSON.stringify(good))), { generation: 7, nextId: 10, nodes: good.nodes });
  });

  it('refuses a table with anything unsound in it', () => {
    const node = (n: unknown[]): unknown => ({ ...good, nodes: [n] });
    assert.equal(parse('{"version":1,'), 'not JSON');
    assert.equal(parse({ ...good, version: 2 }), 'version 2, not 1');
    assert.equal(parse({ ...good, generation: 0 }), 'bad generation');
    assert.equal(parse({ ...good, generation: 2 ** 32 }), 'bad generation');
    assert.equal(parse({ ...good, nextId: 1.5 }), 'bad next id');
    assert.equal(parse(node([1, 1, 'root', 'i'])), 'bad node id 1');
    assert.equal(parse(node([10, 1, 'past next id', 'i'])), 'bad node id 10');
    assert.equal(parse({ ...good, nodes: [good.nodes[0], good.nodes[0]] }), 'bad node id 2');
    assert.equal(parse(node([2, 2, 'own parent', 'i'])), 'bad parent for node 2');
    for (const name of ['..', '.', '', 'a/b', 'nul\0', 'x'.repeat(256)]) assert.equal(parse(node([2, 1, name, 'i'])), 'bad name for node 2', name);
    assert.equal(parse(node([2, 1, 'f', ''])), 'bad identity for node 2');
    assert.equal(parse(node([2, 1, 'f', 'i'.repeat(513)])), 'bad identity for node 2');
    assert.equal(parse(node([2, 1, 'f'])), 'bad node entry');
  });
});
