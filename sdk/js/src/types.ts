// Public types of the SDK and their conversion from the wire messages.
import { create } from "@bufbuild/protobuf";
import * as pb from "./gen/readmark_pb.js";

/** GroupType is the kind of a group, named as in the reference product. */
export type GroupType = "Work" | "Public" | "Meeting" | "Community" | "AVChatRoom";

export const GroupWork: GroupType = "Work";
export const GroupPublic: GroupType = "Public";
export const GroupMeeting: GroupType = "Meeting";
export const GroupCommunity: GroupType = "Community";
export const GroupAVChatRoom: GroupType = "AVChatRoom";

const groupTypeToPB: Record<GroupType, pb.GroupType> = {
  Work: pb.GroupType.WORK,
  Public: pb.GroupType.PUBLIC,
  Meeting: pb.GroupType.MEETING,
  Community: pb.GroupType.COMMUNITY,
  AVChatRoom: pb.GroupType.AVCHATROOM,
};

export function groupTypeOf(t: GroupType): pb.GroupType | undefined {
  return Object.prototype.hasOwnProperty.call(groupTypeToPB, t) ? groupTypeToPB[t] : undefined;
}

function groupTypeFromPB(t: pb.GroupType): GroupType | "" {
  for (const [k, v] of Object.entries(groupTypeToPB)) {
    if (v === t) return k as GroupType;
  }
  return "";
}

/** Priority is a message's delivery priority (the values match the wire enum). */
export type Priority = 0 | 1 | 2 | 3;
export const PriorityDefault: Priority = 0;
export const PriorityHigh: Priority = 1;
export const PriorityNormal: Priority = 2;
export const PriorityLow: Priority = 3;

/** ElemType tells which content a Message carries: text or custom data. */
export type ElemType = 0 | 1;
export const ElemText: ElemType = 0;
export const ElemCustom: ElemType = 1;

/** ReadMembersFilter selects the read or the unread members of a group message. */
export type GroupMessageReadMembersFilter = 0 | 1;
export const ReadMembersFilterRead: GroupMessageReadMembersFilter = 0;
export const ReadMembersFilterUnread: GroupMessageReadMembersFilter = 1;

/**
 * Message is a chat message. Create one with createTextMessage or
 * createCustomMessage, set needReadReceipt if wanted and send it with
 * sendMessage; received and listed messages have every field set. Times are
 * Unix milliseconds (0 = not set).
 */
export interface Message {
  /** Set by the server on send. */
  msgID: string;
  /** Position in its conversation, set by the server (0 for onlineUserOnly messages). */
  seq: number;
  /** User ID of the sender. */
  sender: string;
  /** C2C: the other party ("" for group messages). */
  userID: string;
  /** Group messages ("" for C2C). */
  groupID: string;
  /** Server time, Unix milliseconds. */
  timestamp: number;
  /** Sent by this client's user. */
  isSelf: boolean;
  /** The sender wants read receipts. */
  needReadReceipt: boolean;
  /** ElemText content. */
  text: string;
  /** ElemCustom content. */
  customData: Uint8Array;
  elemType: ElemType;
  priority: Priority;
  /** Relayed to online sessions only, never stored. */
  onlineUserOnly: boolean;
  /**
   * This user already sent a read receipt for the message, from any device.
   * Set in history and sync results, and on messages sent receipts for.
   */
  receiptSent: boolean;
  /**
   * The idempotency key of a message this client sends (chosen at random by
   * createTextMessage / createCustomMessage): a send repeated after a lost
   * connection stores the message once. "" on received messages.
   */
  clientMsgID: string;
}

/**
 * MessageReceipt is the read state of one message, or (for
 * onRecvC2CReadReceipt) of a whole C2C conversation.
 */
export interface MessageReceipt {
  msgID: string;
  /** C2C: the peer (onRecvC2CReadReceipt: the reader). */
  userID: string;
  /** C2C: the peer has read it. */
  isPeerRead: boolean;
  /** C2C conversation-level read time (markC2CMessageAsRead), Unix ms; 0 otherwise. */
  timestamp: number;
  groupID: string;
  /** Group: members who read it. */
  readCount: number;
  /** Group: members who must still read it. */
  unreadCount: number;
  /** The message's seq, when known. */
  seq: number;
}

/** GroupMemberInfo is a member in a read-member list. */
export interface GroupMemberInfo {
  userID: string;
  nickName: string;
  faceURL: string;
  /** When the member read the message, Unix ms; 0 in the unread list. */
  readTime: number;
}

/**
 * GroupMessageReadMemberList is one page of getGroupMessageReadMemberList.
 * Pass nextSeq to get the next page while isFinished is false.
 */
export interface GroupMessageReadMemberList {
  members: GroupMemberInfo[];
  nextSeq: number;
  isFinished: boolean;
}

/** GroupEventKind tells what happened in a GroupEvent (the values match the wire enum). */
export type GroupEventKind = 1 | 2 | 3 | 4;
/** userIDs are the initial members. */
export const GroupEventCreated: GroupEventKind = 1;
/** userIDs joined (invited or by themselves). */
export const GroupEventJoined: GroupEventKind = 2;
/** userIDs left. */
export const GroupEventQuit: GroupEventKind = 3;
/** userIDs were removed by opUserID. */
export const GroupEventKicked: GroupEventKind = 4;

/** GroupEvent is a change of a group's membership, pushed to its members. */
export interface GroupEvent {
  groupID: string;
  kind: GroupEventKind;
  userIDs: string[];
  opUserID: string;
  groupType: GroupType | "";
  reason: string;
  /** Unix ms. */
  time: number;
}

/** Limits are the server's limits, announced at login. */
export interface Limits {
  maxFrameBytes: number;
  maxTextBytes: number;
  maxCustomDataBytes: number;
  /** Receipts per call, messages per receipt pull, page size. */
  maxBatch: number;
  maxGroupMembers: number;
  maxMembersPerCall: number;
  /** The client sends something at least this often (ms). */
  heartbeatMs: number;
}

export function limitsFromPB(l: pb.Limits | undefined): Limits {
  return {
    maxFrameBytes: l?.maxFrameBytes ?? 0,
    maxTextBytes: l?.maxTextBytes ?? 0,
    maxCustomDataBytes: l?.maxCustomDataBytes ?? 0,
    maxBatch: l?.maxBatch ?? 0,
    maxGroupMembers: l?.maxGroupMembers ?? 0,
    maxMembersPerCall: l?.maxMembersPerCall ?? 0,
    heartbeatMs: (l?.heartbeatSeconds ?? 0) * 1000,
  };
}

/** newMessage returns a message with every field at its zero value. */
export function newMessage(fields: Partial<Message>): Message {
  return {
    msgID: "",
    seq: 0,
    sender: "",
    userID: "",
    groupID: "",
    timestamp: 0,
    isSelf: false,
    needReadReceipt: false,
    text: "",
    customData: new Uint8Array(0),
    elemType: ElemText,
    priority: PriorityDefault,
    onlineUserOnly: false,
    receiptSent: false,
    clientMsgID: "",
    ...fields,
  };
}

/** messageFromPB converts a wire message as seen by user me. */
export function messageFromPB(m: pb.Message, me: string): Message {
  const isSelf = m.sender === me;
  return newMessage({
    msgID: m.msgId,
    seq: Number(m.seq),
    sender: m.sender,
    userID: m.groupId === "" ? (isSelf ? m.receiver : m.sender) : "",
    groupID: m.groupId,
    timestamp: Number(m.timeMs),
    isSelf,
    needReadReceipt: m.needReadReceipt,
    text: m.text,
    customData: m.customData,
    elemType: m.elemType as ElemType,
    priority: m.priority as Priority,
    onlineUserOnly: m.onlineUserOnly,
    receiptSent: m.receiptSent,
  });
}

export function receiptFromPB(r: pb.MessageReceipt): MessageReceipt {
  return {
    msgID: r.msgId,
    userID: r.userId,
    isPeerRead: r.isPeerRead,
    timestamp: Number(r.timeMs),
    groupID: r.groupId,
    readCount: Number(r.readCount),
    unreadCount: Number(r.unreadCount),
    seq: Number(r.seq),
  };
}

export function memberFromPB(m: pb.GroupMember): GroupMemberInfo {
  return { userID: m.userId, nickName: m.nickName, faceURL: m.faceUrl, readTime: Number(m.readTimeMs) };
}

export function groupEventFromPB(e: pb.GroupEvent): GroupEvent {
  return {
    groupID: e.groupId,
    kind: e.kind as GroupEventKind,
    userIDs: [...e.userIds],
    opUserID: e.opUserId,
    groupType: groupTypeFromPB(e.groupType),
    reason: e.reason,
    time: Number(e.timeMs),
  };
}

/** selfReceiptFromPB converts a reference to a message this user sent a receipt for from another device. */
export function selfReceiptFromPB(r: pb.MessageRef): Message {
  return newMessage({
    msgID: r.msgId,
    seq: Number(r.seq),
    userID: r.conversation?.peerId ?? "",
    groupID: r.conversation?.groupId ?? "",
    receiptSent: true,
  });
}

/**
 * convKey names a conversation from the client's point of view: "g:" + group
 * ID or "p:" + peer ID.
 */
export type ConvKey = string;

/** convKey is the key of the conversation with peer, or of group if set. */
export function convKey(peer: string, group: string): ConvKey {
  return group !== "" ? "g:" + group : "p:" + peer;
}

export function convOf(m: pb.Message, me: string): ConvKey {
  return convKey(m.sender !== me ? m.sender : m.receiver, m.groupId);
}

export function convFromPB(c: pb.Conversation | undefined): ConvKey {
  return convKey(c?.peerId ?? "", c?.groupId ?? "");
}

export function convToPB(k: ConvKey): pb.Conversation {
  return k.startsWith("g:")
    ? create(pb.ConversationSchema, { groupId: k.slice(2) })
    : create(pb.ConversationSchema, { peerId: k.slice(2) });
}

/** refOf builds the wire reference of msg. */
export function refOf(msg: Message): pb.MessageRef {
  const conversation = msg.groupID !== "" ? { groupId: msg.groupID } : { peerId: msg.userID };
  return create(pb.MessageRefSchema, { conversation, seq: BigInt(msg.seq), msgId: msg.msgID });
}
