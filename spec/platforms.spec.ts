// The platform table, as exported to apps.
import { expect } from 'chai';
import { PLATFORMS, platformClass } from '../lib/index.js';
import { hasPushOnline, isWebGroup, parsePlatform } from '../lib/core/platforms.js';

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

  it('classes a platform by any accepted name: iOS is mobile, unknown names have no class', () => {
    expect(platformClass('iOS')).to.equal('mobile');
    expect(platformClass('iPhone')).to.equal('mobile');
    for (const name of ['constructor', '__proto__', 'ios', 'Symbian', '']) expect(platformClass(name)).to.equal(undefined);
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
