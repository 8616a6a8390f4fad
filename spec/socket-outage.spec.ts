// Login faults during a store outage: refused as SERVER_ERROR, logged once per episode, not once per device.

import { expect } from 'chai';
import { MemoryStore } from '../lib/index.js';
import { auth, startHarness, type Harness } from './fixtures/socket-harness.js';

/** A MemoryStore whose logins fail while `down` is set, as a store whose database is away would. */
class FlakyStore extends MemoryStore {
  down = false;
  override login(...args: Parameters<MemoryStore['login']>): ReturnType<MemoryStore['login']> {
    if (this.down) return Promise.reject(new Error('store unreachable'));
    return super.login(...args);
  }
}

describe('socket logins while the store is away', function () {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('refuses each login with SERVER_ERROR and logs the episode once, again after a success', async function () {
    const store = new FlakyStore();
    harness = await startHarness({ store });
    store.down = true;
    for (let i = 0; i < 5; i++) expect(await harness.refused(auth(`u${i}`, 'Web'))).to.include({ code: 'SERVER_ERROR' });
    expect(harness.errors).to.have.length(1);
    store.down = false;
    await harness.connect(auth('ok', 'Web'));
    store.down = true;
    expect(await harness.refused(auth('later', 'Web'))).to.include({ code: 'SERVER_ERROR' });
    expect(harness.errors).to.have.length(2);
  });
});
