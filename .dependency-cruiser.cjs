// The library's layers, checked by `npm run lint` (and the lint stage of `npm test`): arrows point inward only, and no cycle.
//
//   util            leaf helpers, no imports of the library
//   core            platforms, policy, clock, scheduler, domain types, logger type, the store contract and its errors
//   engine          the state machine; reads only its own EngineConfig
//   store, redis,   the stores: MemoryStore (+ persistence), RedisStore, the SQLite persistence
//   sqlite
//   options.ts      the mount's options resolved (the config layer)
//   rooms, callback,the adapters: they read the config and talk to the engine, never to the facade's module
//   socket, http
//   presence.ts,    the facade and the entry point
//   index.ts
//   client          the browser/Node client helper: types of the wire protocol only, nothing of the server

/** Paths of lib/ (relative to the repository) a layer may not import. */
const lib = (names) => `^lib/(${names.join('|')})(/|\\.ts$)`;
const facade = ['presence', 'index'];
const adapters = ['rooms', 'callback', 'socket', 'http'];
const stores = ['store', 'redis', 'sqlite'];

module.exports = {
  forbidden: [
    { name: 'no-cycle', severity: 'error', comment: 'A cycle between modules of lib/.', from: { path: '^lib/' }, to: { circular: true } },
    {
      name: 'util-is-a-leaf',
      severity: 'error',
      from: { path: '^lib/util/' },
      to: { path: '^lib/', pathNot: '^lib/util/' },
    },
    {
      name: 'core-is-inner',
      severity: 'error',
      comment: 'core knows nothing of the engine, the stores, the options, the adapters or the facade.',
      from: { path: '^lib/core/' },
      to: { path: '^lib/', pathNot: '^lib/(core|util)/' },
    },
    {
      name: 'engine-reads-core-only',
      severity: 'error',
      from: { path: '^lib/engine/' },
      to: { path: '^lib/', pathNot: '^lib/(core|util|engine)/' },
    },
    {
      name: 'stores-read-core-only',
      severity: 'error',
      comment: 'A store implements the contract of lib/core/store.ts; it does not reach into the engine or the adapters.',
      from: { path: lib(stores) },
      to: { path: '^lib/', pathNot: '^lib/(core|util|store|redis|sqlite)/' },
    },
    {
      name: 'options-below-adapters',
      severity: 'error',
      from: { path: '^lib/options\\.ts$' },
      to: { path: lib([...adapters, ...facade, 'client']) },
    },
    {
      name: 'adapters-not-the-facade',
      severity: 'error',
      comment: 'Adapters get the service they need passed in (lib/service.ts), not the facade module.',
      from: { path: lib(adapters) },
      to: { path: lib([...facade, 'client']) },
    },
    {
      name: 'adapters-in-order',
      severity: 'error',
      comment: 'rooms and callback come before socket and http; socket and http do not import each other.',
      from: { path: lib(['rooms', 'callback']) },
      to: { path: lib(['socket', 'http']) },
    },
    { name: 'socket-not-http', severity: 'error', from: { path: '^lib/socket/' }, to: { path: '^lib/http/' } },
    { name: 'http-not-socket', severity: 'error', from: { path: '^lib/http/' }, to: { path: '^lib/socket/' } },
    { name: 'rooms-not-callback', severity: 'error', from: { path: '^lib/rooms/' }, to: { path: '^lib/callback/' } },
    { name: 'callback-not-rooms', severity: 'error', from: { path: '^lib/callback/' }, to: { path: '^lib/rooms/' } },
    {
      name: 'client-carries-no-server',
      severity: 'error',
      comment: 'The client helper runs in browsers: it may import types of the wire protocol, not server code.',
      from: { path: '^lib/client/' },
      to: { path: '^lib/', pathNot: '^lib/(client|core|util)/|^lib/socket/protocol\\.ts$|^lib/rooms/types\\.ts$', dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^lib/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
