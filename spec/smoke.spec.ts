// Quick end-to-end check of the engine through createPresence with a manual clock.
import { expect } from 'chai';
import { createPresence, ManualClock } from '../lib/index.js';
import type { PresenceChange } from '../lib/index.js';

describe('smoke', () => {
  it('logs in, closes to PushOnline, expires', async () => {
    const clock = new ManualClock();
    const presence = createPresence({ clock, pushOnlineTtl: 1000 });
    const events: PresenceChange[] = [];
    presence.on('change', (e) => events.push(e));
    const { connection } = await presence.engine.connect({ userId: 'u1', platform: 'Android' }, () => {});
    expect((await presence.query(['u1']))[0]?.status).to.equal('Online');
    presence.engine.disconnect(connection, 'closed');
    expect((await presence.query(['u1']))[0]?.status).to.equal('PushOnline');
    clock.advance(1000);
    expect((await presence.query(['u1']))[0]?.status).to.equal('Offline');
    expect(events.map((e) => `${e.action}/${e.reason}`)).to.deep.equal(['Login/Register', 'Disconnect/LinkClose', 'Logout/Expired']);
    await presence.close();
  });

  it('refuses a listener for an event that never fires, naming the nearest one', async () => {
    const presence = createPresence();
    expect(() => presence.on('chnage' as 'change', () => {})).to.throw(TypeError, /unknown presence event "chnage"; did you mean "change"\?/);
    expect(() => presence.off('callback-faild' as 'change', () => {})).to.throw(TypeError, /did you mean "callback-failed"/);
    expect(() => presence.on('change', 'nope' as never)).to.throw(TypeError, /'change' listener must be a function/);
    await presence.close();
  });
});
