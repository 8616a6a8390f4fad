// The platform table, as exported to apps.
import { expect } from 'chai';
import { PLATFORMS, platformClass } from '../lib/index.js';
import { hasPushOnline, isWebGroup, parsePlatform } from '../lib/engine/platforms.js';

describe('platforms', () => {
  it('classes every exported platform as SPEC.md does', () => {
    expect(Object.fromEntries(PLATFORMS.map((platform) => [platform, platformClass(platform)]))).to.deep.equal({
      Android: 'mobile',
      iPhone: 'mobile',
      iPad: 'mobile',
      Windows: 'desktop',
      Mac: 'desktop',
      Linux: 'desktop',
      Web: 'web',
      MiniProgram: 'miniProgram',
    });
  });

  it('gives PushOnline to mobile platforms only and groups Web with MiniProgram', () => {
    expect(PLATFORMS.filter(hasPushOnline)).to.deep.equal(['Android', 'iPhone', 'iPad']);
    expect(PLATFORMS.filter(isWebGroup)).to.deep.equal(['Web', 'MiniProgram']);
  });

  it('parses names as own keys only, with iOS as iPhone', () => {
    expect(parsePlatform('iOS')).to.equal('iPhone');
    expect(parsePlatform('Mac')).to.equal('Mac');
    for (const name of ['constructor', '__proto__', 'toString', 'android', '', 7, null]) expect(parsePlatform(name)).to.equal(undefined);
  });
});
