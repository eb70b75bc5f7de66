/**
 * @readmark/sdk — the TypeScript SDK of Readmark, a self-hosted IM server
 * with message read receipts. The API mirrors the Go SDK (package im) in
 * TypeScript style: promises, failures as ReadmarkError, listeners for
 * pushed events. See README.md.
 */
export { Client, type ClientOptions, type CallOptions, type SendMessageOptions } from "./client.js";
export { ReadmarkError } from "./errors.js";
export * from "./codes.js";
export type { AdvancedMsgListener, GroupListener, ConnListener } from "./listeners.js";
export type { WebSocketConstructor, WebSocketLike } from "./session.js";
export {
  type GroupType,
  GroupWork,
  GroupPublic,
  GroupMeeting,
  GroupCommunity,
  GroupAVChatRoom,
  type Priority,
  PriorityDefault,
  PriorityHigh,
  PriorityNormal,
  PriorityLow,
  type ElemType,
  ElemText,
  ElemCustom,
  type GroupMessageReadMembersFilter,
  ReadMembersFilterRead,
  ReadMembersFilterUnread,
  type GroupEventKind,
  GroupEventCreated,
  GroupEventJoined,
  GroupEventQuit,
  GroupEventKicked,
  type Message,
  type MessageReceipt,
  type GroupMemberInfo,
  type GroupMessageReadMemberList,
  type GroupEvent,
  type Limits,
} from "./types.js";
