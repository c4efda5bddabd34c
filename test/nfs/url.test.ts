import assert from 'assert/strict';
import { describeNfsUrl, parseNfsUrl } from '../../src/layers/nfs/url';

describe('nfs:// URLs', function () {
  this.timeout(5000);

  it('parses host, port, path and every option', () => {
    const url = parseNfsUrl(
      'nfs://server.example:2049/export/a/b?mountport=635&nlmport=4045&dircache=60&uid=1000&gid=100&soft&timeo=5&retrans=1&actimeo=3&noresvport',
    );
    assert.equal(url.host, 'server.example');
    assert.equal(url.port, 2049);
    assert.equal(url.mountPort, 635);
    assert.equal(url.nlmPort, 4045);
    assert.deepEqual(
      url.path.map((c) => c.toString()),
      ['export', 'a', 'b'],
    );
    assert.deepEqual(
      { uid: url.uid, gid: url.gid, soft: url.soft, timeo: url.timeo, retrans: url.retrans, actimeo: url.actimeo, resvport: url.resvport },
      { uid: 1000, gid: 100, soft: true, timeo: 5, retrans: 1, actimeo: 3, resvport: false },
    );
  });

  it('defaults to the portmapper, a hard mount, the kernel timeouts and no attribute cache', () => {
    const url = parseNfsUrl('nfs://10.1.2.3/export');
    assert.equal(url.port, undefined);
    assert.equal(url.mountPort, undefined);
    assert.equal(url.nlmPort, undefined);
    assert.deepEqual(
      { soft: url.soft, timeo: url.timeo, retrans: url.retrans, actimeo: url.actimeo, resvport: url.resvport },
      { soft: false, timeo: 600, retrans: 2, actimeo: 0, resvport: true },
    );
    assert.equal(url.uid, process.getuid?.());
  });

  it('takes vers= (or nfsvers=) 3, 4.1 or 4.2; none: the highest the server offers', () => {
    assert.equal(parseNfsUrl('nfs://h/e').vers, undefined);
    assert.equal(parseNfsUrl('nfs://h/e?vers=3').vers, '3');
    assert.equal(parseNfsUrl('nfs://h/e?vers=4.1').vers, '4.1');
    assert.equal(parseNfsUrl('nfs://h/e?nfsvers=4.2&soft').vers, '4.2');
  });

  it('decodes percent escapes to raw bytes and drops empty components', () => {
    const url = parseNfsUrl('nfs://[::1]:111//ex%20port/%FFx/');
    assert.equal(url.host, '::1');
    assert.deepEqual(url.path, [Buffer.from('ex port'), Buffer.from([0xff, 0x78])]);
    assert.equal(describeNfsUrl(url), 'nfs://[::1]:111/ex%20port/%FFx');
  });

  it('accepts the server root as the export', () => {
    assert.deepEqual(parseNfsUrl('nfs://host').path, []);
    assert.deepEqual(parseNfsUrl('nfs://host/').path, []);
  });

  const bad: [string, RegExp][] = [
    ['http://host/export', /scheme 'http' is not 'nfs'/],
    ['host/export', /missing scheme/],
    ['nfs:///export', /empty host/],
    ['nfs://:2049/export', /empty host/],
    ['nfs://ho$t/export', /host 'ho\$t'/],
    ['nfs://[zz]/export', /not an IPv6 address/],
    ['nfs://host:port/export', /port port: expected a port from 1 to 65535/],
    ['nfs://host:0/export', /port 0: expected a port from 1 to 65535/],
    ['nfs://host:70000/export', /port 70000: expected a port from 1 to 65535/],
    ['nfs://host/export?mountport=x', /mountport=x: expected a port from 1 to 65535/],
    ['nfs://host/export?nlmport=0', /nlmport=0: expected a port from 1 to 65535/],
    ['nfs://host/export?uid=root', /uid=root: expected an id from 0 to 4294967294/],
    ['nfs://host/export?gid=-1', /gid=-1: expected an id from 0 to 4294967294/],
    ['nfs://host/export?uid=4294967295', /uid=4294967295: expected an id from 0 to 4294967294/],
    ['nfs://host/export?timeo=0', /timeo=0: expected deciseconds from 1 to 36000/],
    ['nfs://host/export?timeo=36001', /timeo=36001: expected deciseconds from 1 to 36000/],
    ['nfs://host/export?retrans=1001', /retrans=1001: expected retransmissions from 0 to 1000/],
    ['nfs://host/export?actimeo=3601', /actimeo=3601: expected seconds from 0 to 3600/],
    ['nfs://host/export?dircache=99999999999', /dircache=99999999999: expected seconds from 0 to 3600/],
    ['nfs://host/export?vers=4', /vers=4: versions are 3, 4\.1 and 4\.2 \(NFSv4\.0 is not supported\)/],
    ['nfs://host/export?vers=4.0', /vers=4\.0: versions are 3, 4\.1 and 4\.2/],
    ['nfs://host/export?vers', /option 'vers' needs a value/],
    ['nfs://host/export?frob', /unknown option 'frob'/],
    ['nfs://host/export?soft=1', /option 'soft' takes no value/],
    ['nfs://host/export?retrans', /option 'retrans' needs a value/],
    ['nfs://host/export/../etc', /path component '\.\.' is not allowed/],
    ['nfs://host/export/%zz', /bad percent escape '%zz'/],
    ['nfs://host/export/a%2Fb', /path component 'a%2Fb' encodes a '\/'/],
    ['nfs://host/export#frag', /fragment/],
  ];
  for (const [url, message] of bad) {
    it(`rejects ${url} with a message naming the bad part`, () => {
      assert.throws(
        () => parseNfsUrl(url),
        (error: unknown) => error instanceof Error && error.message.includes(`'${url}'`) && message.test(error.message),
      );
    });
  }
});
