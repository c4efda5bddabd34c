/**
 * Numeric option values with a documented range. Every number a user gives (mount options,
 * nfs:// URL options, fault rules) is read here, so each refusal reads the same way:
 * `NAME=VALUE: expected seconds from 0 to 31536000`.
 */

export interface Bounds {
  readonly min: number;
  readonly max: number;
  /** What the number is, for messages: "seconds", "an id", "a probability". */
  readonly unit: string;
  /** Decimal fractions allowed (else whole numbers only). */
  readonly fraction?: boolean;
}

const WHOLE = /^[0-9]+$/;
const DECIMAL = /^([0-9]+(\.[0-9]*)?|\.[0-9]+)$/;

/** The number `text` writes when it is a plain decimal within `b`, else undefined. */
export function boundedNumber(text: string, b: Bounds): number | undefined {
  if (!(b.fraction ? DECIMAL : WHOLE).test(text)) return undefined;
  const n = Number(text);
  return n >= b.min && n <= b.max ? n : undefined;
}

/** "expected seconds from 0 to 31536000": the tail of every refusal. */
export function expected(b: Bounds): string {
  return `expected ${b.unit} from ${b.min} to ${b.max}`;
}

/** Largest id: (uid_t)-1 means "no change" to chown(2) and no user namespace maps it. */
export const ID: Bounds = { min: 0, max: 0xfffffffe, unit: 'an id' };

/**
 * Kernel cache times (upper_timeout, lower_timeout): a year at most. The reply fields are 64-bit
 * seconds, but a year is already "forever" for a cache, and keeps the value exact in a double.
 */
export const CACHE_SECONDS: Bounds = { min: 0, max: 365 * 24 * 3600, unit: 'seconds', fraction: true };

/** The shortest non-zero cache time: the kernel rounds it up to one jiffy. */
export const ONE_TICK = 1e-9;

/**
 * Delays that become Node timers: an hour at most. setTimeout takes at most 2^31-1 ms and
 * silently fires after 1 ms beyond that.
 */
export const DELAY_MS: Bounds = { min: 0, max: 3_600_000, unit: 'milliseconds' };
