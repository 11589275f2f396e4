/**
 * Constants and packet layouts of the usbredir protocol (spice-usbredir's
 * usbredirproto.h, protocol version 0.7.1):
 * the protocol QEMU's `-device usb-redir` speaks to a usb-host that
 * exports a USB device. All integers are little-endian and all structures
 * are packed.
 *
 * Every packet is a header `type u32, length u32, id u32` (id u64 once both
 * sides announced `cap_64bits_ids`) followed by `length` bytes: the
 * type-specific header, then data.
 */

export enum UsbredirType {
  Hello = 0,
  DeviceConnect = 1,
  DeviceDisconnect = 2,
  Reset = 3,
  InterfaceInfo = 4,
  EpInfo = 5,
  SetConfiguration = 6,
  GetConfiguration = 7,
  ConfigurationStatus = 8,
  SetAltSetting = 9,
  GetAltSetting = 10,
  AltSettingStatus = 11,
  StartIsoStream = 12,
  StopIsoStream = 13,
  IsoStreamStatus = 14,
  StartInterruptReceiving = 15,
  StopInterruptReceiving = 16,
  InterruptReceivingStatus = 17,
  AllocBulkStreams = 18,
  FreeBulkStreams = 19,
  BulkStreamsStatus = 20,
  CancelDataPacket = 21,
  FilterReject = 22,
  FilterFilter = 23,
  DeviceDisconnectAck = 24,
  StartBulkReceiving = 25,
  StopBulkReceiving = 26,
  BulkReceivingStatus = 27,
  ControlPacket = 100,
  BulkPacket = 101,
  IsoPacket = 102,
  InterruptPacket = 103,
  BufferedBulkPacket = 104,
}

export enum UsbredirStatus {
  Success = 0,
  Cancelled = 1,
  Inval = 2,
  IoError = 3,
  Stall = 4,
  Timeout = 5,
  Babble = 6,
}

export enum UsbredirSpeed {
  Low = 0,
  Full = 1,
  High = 2,
  Super = 3,
  Unknown = 255,
}

/** Endpoint types in ep_info. */
export enum UsbredirEndpointType {
  Control = 0,
  Iso = 1,
  Bulk = 2,
  Interrupt = 3,
  Invalid = 255,
}

/** Capability bit numbers in the hello's capability word. */
export enum UsbredirCap {
  BulkStreams = 0,
  ConnectDeviceVersion = 1,
  Filter = 2,
  DeviceDisconnectAck = 3,
  EpInfoMaxPacketSize = 4,
  SixtyFourBitIds = 5,
  ThirtyTwoBitBulkLength = 6,
  BulkReceiving = 7,
}

/** Returns the capability word with the given bits set. */
export function capabilityWord(caps: readonly UsbredirCap[]): number {
  return caps.reduce((word, cap) => (word | (1 << cap)) >>> 0, 0);
}

/** Length of the hello's version string field. */
export const HELLO_VERSION_LENGTH = 64;

/** Largest packet this side accepts: a bulk transfer of 1 MiB plus headers. */
export const MAX_PACKET_LENGTH = (1 << 20) + 64;

/** Length of the type-specific header of each packet type, for the capabilities both sides share. */
export function typeHeaderLength(type: UsbredirType, shared: (cap: UsbredirCap) => boolean): number {
  switch (type) {
    case UsbredirType.Hello:
      return HELLO_VERSION_LENGTH;
    case UsbredirType.DeviceConnect:
      return shared(UsbredirCap.ConnectDeviceVersion) ? 10 : 8;
    case UsbredirType.InterfaceInfo:
      return 4 + 4 * 32;
    case UsbredirType.EpInfo:
      return (
        3 * 32 +
        (shared(UsbredirCap.EpInfoMaxPacketSize) ? 2 * 32 : 0) +
        (shared(UsbredirCap.BulkStreams) ? 4 * 32 : 0)
      );
    case UsbredirType.SetConfiguration:
    case UsbredirType.GetAltSetting:
    case UsbredirType.StartInterruptReceiving:
    case UsbredirType.StopInterruptReceiving:
      return 1;
    case UsbredirType.ConfigurationStatus:
    case UsbredirType.SetAltSetting:
    case UsbredirType.InterruptReceivingStatus:
      return 2;
    case UsbredirType.AltSettingStatus:
      return 3;
    case UsbredirType.StartIsoStream:
      return 3;
    case UsbredirType.StopIsoStream:
      return 1;
    case UsbredirType.IsoStreamStatus:
      return 2;
    case UsbredirType.AllocBulkStreams:
      return 8;
    case UsbredirType.FreeBulkStreams:
      return 4;
    case UsbredirType.BulkStreamsStatus:
      return 9;
    case UsbredirType.StartBulkReceiving:
      return 10;
    case UsbredirType.StopBulkReceiving:
      return 5;
    case UsbredirType.BulkReceivingStatus:
      return 6;
    case UsbredirType.ControlPacket:
      return 10;
    case UsbredirType.BulkPacket:
      return shared(UsbredirCap.ThirtyTwoBitBulkLength) ? 10 : 8;
    case UsbredirType.IsoPacket:
      return 4;
    case UsbredirType.InterruptPacket:
      return 4;
    case UsbredirType.BufferedBulkPacket:
      return 10;
    default:
      // Reset, disconnects, get_configuration, cancel, filter packets: no type-specific header.
      return 0;
  }
}
