// The login policy: which logged-in devices a new login displaces. Pure, so every store decides alike.

import { isWebGroup, platformClass, type Platform } from './platforms.js';
import type { LoginPolicy } from './types.js';

export interface PolicyLimits {
  readonly loginPolicy: LoginPolicy;
  readonly maxInstancesPerPlatform: number;
  readonly maxWebInstances: number;
}

/** A logged-in device as the policy sees it: `order` grows with each login or resume of the user. */
export interface PolicyInstance {
  readonly platform: Platform;
  readonly instanceId: string;
  readonly order: number;
}

/** Web and MiniProgram are one platform for limits and policies. */
function limitGroup(platform: Platform): string {
  return isWebGroup(platform) ? 'Web' : platform;
}

/** The set of platforms among which a policy allows only one at a time. */
function category(policy: LoginPolicy, platform: Platform): string {
  switch (policy) {
    case 'single':
      return 'any';
    case 'dual':
      return isWebGroup(platform) ? 'web' : 'native';
    case 'triple':
      return isWebGroup(platform) ? 'web' : platformClass(platform);
    case 'multi':
      return limitGroup(platform);
    default: {
      const unknown: never = policy;
      throw new TypeError(`unknown login policy ${String(unknown)}`);
    }
  }
}

/**
 * The devices a login on `platform` must kick, oldest first: every device on a platform the policy
 * does not allow beside it, then the oldest devices on its own platform (group) beyond the limit.
 * `existing` must not contain the logging-in instance itself.
 */
export function kickOldestBeyondLimit<T extends PolicyInstance>(existing: readonly T[], platform: Platform, limits: PolicyLimits): T[] {
  const group = limitGroup(platform);
  const ownCategory = category(limits.loginPolicy, platform);
  const kicked: T[] = [];
  const sameGroup: T[] = [];
  for (const instance of existing) {
    if (limitGroup(instance.platform) === group) sameGroup.push(instance);
    else if (category(limits.loginPolicy, instance.platform) === ownCategory) kicked.push(instance);
  }
  const limit = group === 'Web' ? limits.maxWebInstances : limits.maxInstancesPerPlatform;
  if (sameGroup.length + 1 > limit) {
    sameGroup.sort((a, b) => a.order - b.order);
    kicked.push(...sameGroup.slice(0, sameGroup.length + 1 - limit));
  }
  return kicked.sort((a, b) => a.order - b.order);
}
