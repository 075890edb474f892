// The network-namespace fixture itself: the pair is reachable over its veth, a process can run
// as another UID inside, and cleanup removes both namespaces and what ran in them.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createNetnsPair, requireTools, startServerIn, type Seen } from '../fixtures/netns.ts';

requireTools();

t.test('a pod/peer pair: curl across the veth, a server as another UID, cleanup', async (t) => {
  const pair = await createNetnsPair('mlfix');
  let cleaned = false;
  t.teardown(async () => {
    if (!cleaned) await pair.cleanup();
  });
  const names = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  t.match(names, pair.pod);
  t.match(names, pair.peer);

  await startServerIn(pair, pair.peer, pair.peerIp, 8080, 'peer', { uid: 1001 });
  const r = await pair.exec(pair.pod, ['curl', '-sS', '--max-time', '5', `http://${pair.peerIp}:8080/x`], { uid: 1002 });
  t.equal(r.code, 0, r.stderr);
  const seen = JSON.parse(r.stdout) as Seen;
  t.equal(seen.remote, pair.podIp, 'the peer sees the pod address');
  t.equal(seen.url, '/x');

  const who = await pair.exec(pair.pod, ['id', '-u'], { uid: 2102 });
  t.equal(who.stdout.trim(), '2102', 'setpriv drops to the given UID');

  await pair.cleanup();
  cleaned = true;
  const after = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  t.notMatch(after, pair.pod);
  t.notMatch(after, pair.peer);
});
