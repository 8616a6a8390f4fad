// express-presence: real-time online status for Express + Socket.IO apps.

export { createPresence, Presence, type PresenceEvents } from './presence.js';
export { MemoryStore, type MemoryStoreOptions } from './store/memory-store.js';
export { ManualClock, systemClock, type Clock, type TimerHandle } from './core/clock.js';
export { PresenceError, type PresenceErrorCode, type Connection, type ConnectRequest, type ConnectResult } from './engine/engine.js';
export { PLATFORMS, platformClass, type Platform, type PlatformClass } from './core/platforms.js';
export type * from './core/types.js';
export type {
  PresenceOptions,
  ResolvedConfig,
  CallbackOptions,
  PerClass,
  HandshakeLike,
  Authenticate,
  AuthenticateResult,
  PresenceSocketData,
  Authorize,
  AuthorizeRequest,
  CanSee,
  CanJoin,
  LastSeenVisibilityRule,
  Contacts,
  Logger,
} from './options.js';
export type * from './core/store.js';
// For store authors: the rules a store applies the way MemoryStore and RedisStore do.
export { deriveUserStatus } from './core/store.js';
export { kickOldestBeyondLimit, type PolicyInstance, type PolicyLimits } from './core/policy.js';
export { StoreUnavailableError, StoreTimeoutError, isStoreUnavailable, type StoreUnavailableReason } from './core/errors.js';
/** The protocol between processes, written once: extend it with a binding to your backend (docs/STORES.md), as RedisStore does. */
export { SharedStore, type SharedStoreOptions, type SharedLoginResult, type RememberedEnd, type RememberedKick } from './store/shared-store.js';
export type * from './store/persistence.js';
export type {
  PresenceHandshakeAuth,
  HandshakeErrorCode,
  HandshakeErrorData,
  SessionPayload,
  KickedPayload,
  ChangedPayload,
  WatchedUser,
  Answer,
  AnswerErrorCode,
  FailedAnswer,
  SubscribeRequest,
  SubscribeResult,
  UnsubscribeResult,
  SetStatusRequest,
  SetAvailabilityRequest,
  ServerToClientEvents,
  ClientToServerEvents,
} from './socket/protocol.js';
export type { RouterOptions, PresenceRouter, PresenceErrorHandler, SourceHttpStatus } from './http/router.js';
export { RoomError, type RoomErrorCode } from './rooms/registry.js';
export type * from './rooms/types.js';
/** For stores that share rooms across processes (`rooms: 'shared'`, `sharedRooms()`), as RedisStore does. */
export type {
  SharedRoomsBackend,
  SharedRoomsListener,
  SharedRoomMessage,
  SharedRoomState,
  SharedRoomUser,
  SharedDevice,
  SharedOwners,
} from './rooms/shared.js';
export type { JoinRequest, RoomUpdateRequest, RoomClientToServerEvents } from './socket/protocol.js';
export type { RoomPageResponse, RoomsQueryResponse, OnlineMemberNumResponse } from './http/room-routes.js';
export type { QueryStateResponse, QueryStateResult, QueryStateDetail, SourceKickResponse } from './http/source-routes.js';
export type { UsersQueryResponse, UserKickResponse } from './http/plain-routes.js';
export { SourceErrorCode, type Problem, type SourceFailure } from './util/respond.js';
export type { PresenceMetrics, MetricsSnapshot } from './http/metrics.js';
export {
  CallbackDeliveryError,
  type CallbackDeliveryStats,
  type StateChangeCallbackBody,
  type StatusChangeCallbackBody,
  type PresenceCallbackBody,
  type KickedDeviceEntry,
} from './callback/delivery.js';
export { verifyCallbackSignature, signCallback, SIGNATURE_HEADER } from './callback/body.js';
export { callbackReceiver, type CallbackHandler, type CallbackReceiver, type CallbackReceiverOptions } from './callback/receiver.js';
