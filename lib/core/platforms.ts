// Platforms, their classes, and the names clients may use for them.

/** A device platform, as in the source document's `Platform` field. */
export type Platform = 'Android' | 'iPhone' | 'iPad' | 'Windows' | 'Mac' | 'Linux' | 'Web' | 'MiniProgram';

/** How a platform behaves: which timeouts apply and whether it has PushOnline. */
export type PlatformClass = 'mobile' | 'desktop' | 'web' | 'miniProgram';

export const PLATFORMS: readonly Platform[] = ['Android', 'iPhone', 'iPad', 'Windows', 'Mac', 'Linux', 'Web', 'MiniProgram'];

export const PLATFORM_CLASSES: readonly PlatformClass[] = ['mobile', 'desktop', 'web', 'miniProgram'];

const CLASS_OF: Readonly<Record<Platform, PlatformClass>> = {
  Android: 'mobile',
  iPhone: 'mobile',
  iPad: 'mobile',
  Windows: 'desktop',
  Mac: 'desktop',
  Linux: 'desktop',
  Web: 'web',
  MiniProgram: 'miniProgram',
};

const ALIASES: Readonly<Record<string, Platform>> = { iOS: 'iPhone' };

/** The class of a platform, by any name the server accepts (`iOS` is `iPhone`'s class); undefined for an unknown name. */
export function platformClass(platform: Platform | 'iOS'): PlatformClass;
export function platformClass(name: string): PlatformClass | undefined;
export function platformClass(name: string): PlatformClass | undefined {
  // Parsed as a client's name is, so an alias resolves and `constructor` finds no Object.prototype member.
  const platform = parsePlatform(name);
  return platform === undefined ? undefined : CLASS_OF[platform];
}

/** Only mobile devices stay reachable (by push) once their connection is gone. */
export function hasPushOnline(platform: Platform): boolean {
  return CLASS_OF[platform] === 'mobile';
}

/** Web and MiniProgram count as one platform for login limits. */
export function isWebGroup(platform: Platform): boolean {
  return platform === 'Web' || platform === 'MiniProgram';
}

/** The canonical platform for a name a client sent (`iOS` is `iPhone`), or undefined if unknown. */
export function parsePlatform(name: unknown): Platform | undefined {
  if (typeof name !== 'string') return undefined;
  if (Object.prototype.hasOwnProperty.call(CLASS_OF, name)) return name as Platform;
  // Own keys only: "constructor" or "__proto__" must not find Object.prototype's members.
  return Object.prototype.hasOwnProperty.call(ALIASES, name) ? ALIASES[name] : undefined;
}

export const PLATFORM_NAMES_FOR_ERRORS = [...PLATFORMS, ...Object.keys(ALIASES)].map((name) => `"${name}"`).join(', ');
