// Engine inputs at their edges: query options, the heartbeat interval told for tiny timeouts.

import { expect } from 'chai';
import { createPresence, ManualClock } from '../lib/index.js';

describe('engine inputs', function () {
  it('refuses query options that are not { detail?: boolean }, naming them', async function () {
    const presence = createPresence({ clock: new ManualClock() });
    for (const options of [null, 'no', { detail: 'no' }, { detail: 1 }]) {
      let error: unknown;
      await presence.query(['u'], options as never).catch((caught: unknown) => (error = caught));
      expect(error, JSON.stringify(options))
        .to.be.instanceOf(TypeError)
        .with.property('message')
        .that.matches(/query options must be an object \{ detail\?: boolean \}/);
    }
    expect(await presence.query(['u'], { detail: false })).to.deep.equal([
      { userId: 'u', status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null },
    ]);
    await presence.close();
  });

  it('never tells a client a heartbeat interval below 1 ms', async function () {
    const presence = createPresence({ clock: new ManualClock(), heartbeatTimeout: '1ms' });
    const { heartbeatInterval } = await presence.engine.connect({ userId: 'u', platform: 'Web' }, () => {});
    expect(heartbeatInterval).to.equal(1);
    await presence.close();
  });
});

describe('engine close', function () {
  it('leaves no connection open', async function () {
    const presence = createPresence({ clock: new ManualClock() });
    const { connection } = await presence.engine.connect({ userId: 'u', platform: 'Web' }, () => {});
    expect(connection.open).to.equal(true);
    await presence.close();
    expect(connection.open).to.equal(false);
  });
});
