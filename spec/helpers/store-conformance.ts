// The store conformance suite now ships as express-presence/testing (lib/testing); the specs run it from there.

export { storeConformance, type StoreFactory, type StoreLimits, type SuiteFunctions } from '../../lib/testing/index.js';
