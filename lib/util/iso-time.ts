// ISO 8601 text for a time in ms, without a Date per call: queries format thousands of times each.

const DAY = 86_400_000;
const TWO = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
/** "000Z" to "999Z": the milliseconds and the zone in one piece, so a time is one concatenation. */
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z`);
/** "YYYY-MM-DDT" per day number; the few days in use are formatted once. */
const dayPrefixes = new Map<number, string>();
/**
 * "YYYY-MM-DDTHH:MM:SS." of recent seconds, direct-mapped by second: a burst of changes (a mass
 * expiry, a busy query) formats many times within the same few seconds.
 */
const SECOND_SLOTS = 256;
const secondKeys = new Float64Array(SECOND_SLOTS).fill(-1);
const secondPrefixes: string[] = new Array<string>(SECOND_SLOTS).fill('');

function dayPrefix(day: number): string {
  let prefix = dayPrefixes.get(day);
  if (prefix === undefined) {
    if (dayPrefixes.size >= 4096) dayPrefixes.clear();
    prefix = new Date(day * DAY).toISOString().slice(0, 11);
    dayPrefixes.set(day, prefix);
  }
  return prefix;
}

/** The same text as `new Date(ms).toISOString()`, several times faster. */
export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms >= 253_402_300_800_000) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  const slot = second % SECOND_SLOTS;
  let prefix: string;
  if (secondKeys[slot] === second) {
    prefix = secondPrefixes[slot] as string;
  } else {
    const day = Math.floor(ms / DAY);
    let rest = second - day * (DAY / 1000);
    const hours = Math.floor(rest / 3600);
    rest -= hours * 3600;
    const minutes = Math.floor(rest / 60);
    prefix = `${dayPrefix(day)}${TWO[hours]}:${TWO[minutes]}:${TWO[rest - minutes * 60]}.`;
    secondKeys[slot] = second;
    secondPrefixes[slot] = prefix;
  }
  return prefix + (MILLIS[ms - second * 1000] as string);
}
