//! Common Transport (FC-GS-7 §4): the 16-byte CT_IU preamble, and the directory /
//! name-server (GS_TYPE 0xFC, subtype 0x02, FC-GS-7 §5.2) requests and accept payloads
//! this simulator uses, as [`NsRequest`] / [`NsResponse`].
//!
//! ```text
//! CT_IU preamble (16 bytes)
//! 0  revision (0x01) | IN_ID (3)
//! 4  GS_TYPE | GS_SUBTYPE | options | reserved
//! 8  command/response code (2) | max/residual size in words (2)
//! 12 reserved | reason code | reason explanation | vendor unique
//! ```
//!
//! A name-server reply does not repeat the command it answers, so decoding an accept
//! payload takes the request's command code.

use bytes::{Buf, BufMut, Bytes};

use super::DecodeError;
use super::wire::{
    get_array, get_fcid, get_wwn, len_u8, need, pad4, put_fcid, put_fcid_word, take, take_rest,
};
use crate::fcid::FcId;
use crate::wwn::{Wwnn, Wwpn};

/// Length of the basic CT_IU preamble.
pub const CT_PREAMBLE_LEN: usize = 16;
/// CT revision this codec writes.
pub const CT_REVISION: u8 = 0x01;
/// GS_TYPE of the directory service.
pub const GS_TYPE_DIRECTORY: u8 = 0xFC;
/// GS_SUBTYPE of the name server within the directory service.
pub const GS_SUBTYPE_NAME_SERVER: u8 = 0x02;
/// Command/response code of a CT accept (FS_ACC).
pub const CT_ACCEPT: u16 = 0x8002;
/// Command/response code of a CT reject (FS_RJT).
pub const CT_REJECT: u16 = 0x8001;
/// Length of a GA_NXT accept payload (FC-GS-7 table "GA_NXT Accept").
pub const GA_NXT_ACCEPT_LEN: usize = 620;

/// Name-server command codes (FC-GS-7 table 138).
pub mod ns_cmd {
    /// Get all next.
    pub const GA_NXT: u16 = 0x0100;
    /// Get port name by port ID.
    pub const GPN_ID: u16 = 0x0112;
    /// Get node name by port ID.
    pub const GNN_ID: u16 = 0x0113;
    /// Get port ID by port name.
    pub const GID_PN: u16 = 0x0121;
    /// Get port IDs by FC-4 type.
    pub const GID_FT: u16 = 0x0171;
    /// Register port name for port ID.
    pub const RPN_ID: u16 = 0x0212;
    /// Register node name for port ID.
    pub const RNN_ID: u16 = 0x0213;
    /// Register FC-4 types for port ID.
    pub const RFT_ID: u16 = 0x0217;
    /// Register symbolic port name for port ID.
    pub const RSPN_ID: u16 = 0x0218;
    /// Register FC-4 features for port ID.
    pub const RFF_ID: u16 = 0x021F;
    /// Register symbolic node name for node name.
    pub const RSNN_NN: u16 = 0x0239;
}

/// CT reject reason codes (FC-GS-7 table 10).
pub mod ct_reason {
    /// Invalid command code.
    pub const INVALID_COMMAND: u8 = 0x01;
    /// Invalid version level.
    pub const INVALID_VERSION: u8 = 0x02;
    /// Logical error.
    pub const LOGICAL_ERROR: u8 = 0x03;
    /// Invalid CT_IU size.
    pub const INVALID_SIZE: u8 = 0x04;
    /// Logical busy.
    pub const LOGICAL_BUSY: u8 = 0x05;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x07;
    /// Unable to perform command request.
    pub const UNABLE_TO_PERFORM: u8 = 0x09;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x0B;
}

/// Name-server reject reason explanations (FC-GS-7 table 140).
pub mod ns_explanation {
    /// No additional explanation.
    pub const NONE: u8 = 0x00;
    /// Port ID not registered.
    pub const PORT_ID_NOT_REGISTERED: u8 = 0x01;
    /// Port name not registered.
    pub const PORT_NAME_NOT_REGISTERED: u8 = 0x02;
    /// Node name not registered.
    pub const NODE_NAME_NOT_REGISTERED: u8 = 0x03;
    /// Class of service not registered.
    pub const COS_NOT_REGISTERED: u8 = 0x04;
    /// FC-4 types not registered.
    pub const FC4_TYPES_NOT_REGISTERED: u8 = 0x07;
}

/// Name-server port types (FC-GS-7 table 141).
pub mod port_type {
    /// Unidentified.
    pub const UNIDENTIFIED: u8 = 0x00;
    /// N_Port.
    pub const N_PORT: u8 = 0x01;
    /// NL_Port.
    pub const NL_PORT: u8 = 0x02;
    /// Nx_Port.
    pub const NX_PORT: u8 = 0x7F;
    /// F_Port.
    pub const F_PORT: u8 = 0x81;
    /// E_Port.
    pub const E_PORT: u8 = 0x84;
}

/// FC-4 features bits for FCP in RFF_ID (FCP-4 §6.2; Linux `FCP_FEAT_*`).
pub mod fc4_features {
    /// Target function.
    pub const TARGET: u8 = 0x01;
    /// Initiator function.
    pub const INITIATOR: u8 = 0x02;
}

/// Class-of-service bits in name-server objects (FC-GS-7; Wireshark `fcdns.cos`).
pub mod class_of_service {
    /// Class 2.
    pub const CLASS_2: u32 = 0x04;
    /// Class 3.
    pub const CLASS_3: u32 = 0x08;
}

/// The 16-byte CT_IU basic preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtPreamble {
    /// CT revision, [`CT_REVISION`].
    pub revision: u8,
    /// IN_ID: the original requester's N_Port_ID, 0 when not used.
    pub in_id: FcId,
    /// GS_TYPE (0xFC = directory service).
    pub gs_type: u8,
    /// GS_SUBTYPE (0x02 = name server).
    pub gs_subtype: u8,
    /// Options byte.
    pub options: u8,
    /// Command code (< 0x8000) in requests; [`CT_ACCEPT`] / [`CT_REJECT`] in replies.
    pub command_response: u16,
    /// Request: largest accept payload wanted, in words, 0 = no limit. Accept: words
    /// that did not fit.
    pub max_residual_size_words: u16,
    /// Reject reason code (see [`ct_reason`]); 0 unless rejecting.
    pub reason: u8,
    /// Reject reason explanation (see [`ns_explanation`]); 0 unless rejecting.
    pub explanation: u8,
    /// Vendor unique byte.
    pub vendor: u8,
}

impl CtPreamble {
    /// A name-server preamble with the given command/response code, everything else 0.
    pub fn name_server(command_response: u16) -> CtPreamble {
        CtPreamble {
            revision: CT_REVISION,
            in_id: FcId::UNIDENTIFIED,
            gs_type: GS_TYPE_DIRECTORY,
            gs_subtype: GS_SUBTYPE_NAME_SERVER,
            options: 0,
            command_response,
            max_residual_size_words: 0,
            reason: 0,
            explanation: 0,
            vendor: 0,
        }
    }

    /// Writes the 16 preamble bytes.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.revision);
        put_fcid(buf, self.in_id);
        buf.put_u8(self.gs_type);
        buf.put_u8(self.gs_subtype);
        buf.put_u8(self.options);
        buf.put_u8(0);
        buf.put_u16(self.command_response);
        buf.put_u16(self.max_residual_size_words);
        buf.put_u8(0);
        buf.put_u8(self.reason);
        buf.put_u8(self.explanation);
        buf.put_u8(self.vendor);
    }

    /// Reads 16 preamble bytes.
    pub fn decode(buf: &mut impl Buf) -> Result<CtPreamble, DecodeError> {
        need(buf, CT_PREAMBLE_LEN)?;
        let revision = buf.get_u8();
        let in_id = get_fcid(buf);
        let gs_type = buf.get_u8();
        let gs_subtype = buf.get_u8();
        let options = buf.get_u8();
        buf.advance(1);
        let command_response = buf.get_u16();
        let max_residual_size_words = buf.get_u16();
        buf.advance(1);
        Ok(CtPreamble {
            revision,
            in_id,
            gs_type,
            gs_subtype,
            options,
            command_response,
            max_residual_size_words,
            reason: buf.get_u8(),
            explanation: buf.get_u8(),
            vendor: buf.get_u8(),
        })
    }
}

/// A whole CT_IU: preamble and the command-specific payload, uninterpreted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CtIu {
    /// The basic preamble.
    pub preamble: CtPreamble,
    /// Everything after the preamble.
    pub payload: Bytes,
}

impl CtIu {
    /// True when the preamble addresses the name server (GS_TYPE 0xFC, subtype 0x02).
    pub fn is_name_server(&self) -> bool {
        self.preamble.gs_type == GS_TYPE_DIRECTORY
            && self.preamble.gs_subtype == GS_SUBTYPE_NAME_SERVER
    }

    /// True for an accept or reject (command/response code ≥ 0x8000).
    pub fn is_reply(&self) -> bool {
        self.preamble.command_response >= 0x8000
    }

    /// Writes the preamble and the payload.
    pub fn encode(&self, buf: &mut impl BufMut) {
        self.preamble.encode(buf);
        buf.put_slice(&self.payload);
    }

    /// Reads a preamble and takes the rest as the payload (zero-copy from `Bytes`).
    pub fn decode(buf: &mut impl Buf) -> Result<CtIu, DecodeError> {
        let preamble = CtPreamble::decode(buf)?;
        Ok(CtIu {
            preamble,
            payload: take_rest(buf),
        })
    }
}

/// The 32-byte FC-4 TYPEs bitmap (FC-GS-7 §5.2.3.7): TYPE `t` is bit `t % 32` of
/// big-endian word `t / 32`, so FCP (0x08) is 0x0000_0100 in word 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fc4Types(pub [u32; 8]);

impl Fc4Types {
    /// The bitmap with only FCP set.
    pub fn fcp() -> Fc4Types {
        Fc4Types::default().with(super::header::ftype::FCP)
    }

    /// This bitmap with TYPE `t` also set.
    pub fn with(mut self, t: u8) -> Fc4Types {
        if let Some(w) = self.0.get_mut(usize::from(t / 32)) {
            *w |= 1 << (t % 32);
        }
        self
    }

    /// True when TYPE `t` is set.
    pub fn contains(&self, t: u8) -> bool {
        self.0
            .get(usize::from(t / 32))
            .is_some_and(|w| w & (1 << (t % 32)) != 0)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        for w in self.0 {
            buf.put_u32(w);
        }
    }

    /// Reads 32 bytes; the caller has checked the length.
    fn decode_unchecked(buf: &mut impl Buf) -> Fc4Types {
        let mut m = [0u32; 8];
        for w in &mut m {
            *w = buf.get_u32();
        }
        Fc4Types(m)
    }
}

/// A name-server request payload (after the CT preamble), FC-GS-7 §5.2.5.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NsRequest {
    /// GA_NXT: the port object of the next port after `port_id`.
    GaNxt {
        /// The port ID to start after.
        port_id: FcId,
    },
    /// GPN_ID: port name of `port_id`.
    GpnId {
        /// The port queried.
        port_id: FcId,
    },
    /// GNN_ID: node name of `port_id`.
    GnnId {
        /// The port queried.
        port_id: FcId,
    },
    /// GID_PN: port ID of `port_name`.
    GidPn {
        /// The port name queried.
        port_name: Wwpn,
    },
    /// GID_FT: port IDs registered for an FC-4 type within a scope.
    GidFt {
        /// Domain ID scope, 0 = whole fabric.
        domain_scope: u8,
        /// Area ID scope, 0 = whole domain.
        area_scope: u8,
        /// The FC-4 TYPE (0x08 = FCP).
        fc4_type: u8,
    },
    /// RPN_ID: register a port name.
    RpnId {
        /// The registering port.
        port_id: FcId,
        /// Its port name.
        port_name: Wwpn,
    },
    /// RNN_ID: register a node name.
    RnnId {
        /// The registering port.
        port_id: FcId,
        /// Its node name.
        node_name: Wwnn,
    },
    /// RFT_ID: register FC-4 types.
    RftId {
        /// The registering port.
        port_id: FcId,
        /// The FC-4 TYPEs it supports.
        fc4_types: Fc4Types,
    },
    /// RSPN_ID: register a symbolic port name.
    RspnId {
        /// The registering port.
        port_id: FcId,
        /// Up to 255 bytes; longer names are truncated on encode.
        symbolic_name: Bytes,
    },
    /// RFF_ID: register FC-4 features for one FC-4 type.
    RffId {
        /// The registering port.
        port_id: FcId,
        /// Feature bits (see [`fc4_features`]).
        fc4_features: u8,
        /// The FC-4 TYPE the features are for.
        fc4_type: u8,
    },
    /// RSNN_NN: register a symbolic node name.
    RsnnNn {
        /// The node name.
        node_name: Wwnn,
        /// Up to 255 bytes; longer names are truncated on encode.
        symbolic_name: Bytes,
    },
    /// A command this codec does not model.
    Unsupported {
        /// Its command code (never one of [`ns_cmd`]).
        command: u16,
        /// The payload after the preamble.
        payload: Bytes,
    },
}

/// Writes a length byte and up to 255 name bytes, then zero-pads the object (whose
/// other fields take `before` bytes) to a word boundary.
fn put_symbolic_name(buf: &mut impl BufMut, before: usize, name: &Bytes) {
    let name = &name[..name.len().min(255)];
    buf.put_u8(len_u8(name.len()));
    buf.put_slice(name);
    buf.put_bytes(0, pad4(before + 1 + name.len()));
}

/// Reads a port identifier word (reserved byte + 3-byte FC_ID).
fn port_id(buf: &mut impl Buf) -> Result<FcId, DecodeError> {
    need(buf, 4)?;
    buf.advance(1);
    Ok(get_fcid(buf))
}

fn get_symbolic_name(buf: &mut impl Buf) -> Result<Bytes, DecodeError> {
    need(buf, 1)?;
    let len = usize::from(buf.get_u8());
    take(buf, len)
}

impl NsRequest {
    /// The command code.
    pub fn command(&self) -> u16 {
        match self {
            NsRequest::GaNxt { .. } => ns_cmd::GA_NXT,
            NsRequest::GpnId { .. } => ns_cmd::GPN_ID,
            NsRequest::GnnId { .. } => ns_cmd::GNN_ID,
            NsRequest::GidPn { .. } => ns_cmd::GID_PN,
            NsRequest::GidFt { .. } => ns_cmd::GID_FT,
            NsRequest::RpnId { .. } => ns_cmd::RPN_ID,
            NsRequest::RnnId { .. } => ns_cmd::RNN_ID,
            NsRequest::RftId { .. } => ns_cmd::RFT_ID,
            NsRequest::RspnId { .. } => ns_cmd::RSPN_ID,
            NsRequest::RffId { .. } => ns_cmd::RFF_ID,
            NsRequest::RsnnNn { .. } => ns_cmd::RSNN_NN,
            NsRequest::Unsupported { command, .. } => *command,
        }
    }

    /// Writes the payload that follows the preamble.
    pub fn encode_payload(&self, buf: &mut impl BufMut) {
        match self {
            NsRequest::GaNxt { port_id }
            | NsRequest::GpnId { port_id }
            | NsRequest::GnnId { port_id } => {
                put_fcid_word(buf, 0, *port_id);
            }
            NsRequest::GidPn { port_name } => buf.put_u64(port_name.0.0),
            NsRequest::GidFt {
                domain_scope,
                area_scope,
                fc4_type,
            } => {
                buf.put_slice(&[0, *domain_scope, *area_scope, *fc4_type]);
            }
            NsRequest::RpnId { port_id, port_name } => {
                put_fcid_word(buf, 0, *port_id);
                buf.put_u64(port_name.0.0);
            }
            NsRequest::RnnId { port_id, node_name } => {
                put_fcid_word(buf, 0, *port_id);
                buf.put_u64(node_name.0.0);
            }
            NsRequest::RftId { port_id, fc4_types } => {
                put_fcid_word(buf, 0, *port_id);
                fc4_types.encode(buf);
            }
            NsRequest::RspnId {
                port_id,
                symbolic_name,
            } => {
                put_fcid_word(buf, 0, *port_id);
                put_symbolic_name(buf, 4, symbolic_name);
            }
            NsRequest::RffId {
                port_id,
                fc4_features,
                fc4_type,
            } => {
                put_fcid_word(buf, 0, *port_id);
                buf.put_slice(&[0, 0, *fc4_features, *fc4_type]);
            }
            NsRequest::RsnnNn {
                node_name,
                symbolic_name,
            } => {
                buf.put_u64(node_name.0.0);
                put_symbolic_name(buf, 8, symbolic_name);
            }
            NsRequest::Unsupported { payload, .. } => buf.put_slice(payload),
        }
    }

    /// Decodes the payload of a request with the given command code.
    pub fn decode_payload(command: u16, buf: &mut impl Buf) -> Result<NsRequest, DecodeError> {
        Ok(match command {
            ns_cmd::GA_NXT => NsRequest::GaNxt {
                port_id: port_id(buf)?,
            },
            ns_cmd::GPN_ID => NsRequest::GpnId {
                port_id: port_id(buf)?,
            },
            ns_cmd::GNN_ID => NsRequest::GnnId {
                port_id: port_id(buf)?,
            },
            ns_cmd::GID_PN => {
                need(buf, 8)?;
                NsRequest::GidPn {
                    port_name: Wwpn(get_wwn(buf)),
                }
            }
            ns_cmd::GID_FT => {
                need(buf, 4)?;
                buf.advance(1);
                NsRequest::GidFt {
                    domain_scope: buf.get_u8(),
                    area_scope: buf.get_u8(),
                    fc4_type: buf.get_u8(),
                }
            }
            ns_cmd::RPN_ID => {
                let port_id = port_id(buf)?;
                need(buf, 8)?;
                NsRequest::RpnId {
                    port_id,
                    port_name: Wwpn(get_wwn(buf)),
                }
            }
            ns_cmd::RNN_ID => {
                let port_id = port_id(buf)?;
                need(buf, 8)?;
                NsRequest::RnnId {
                    port_id,
                    node_name: Wwnn(get_wwn(buf)),
                }
            }
            ns_cmd::RFT_ID => {
                let port_id = port_id(buf)?;
                need(buf, 32)?;
                NsRequest::RftId {
                    port_id,
                    fc4_types: Fc4Types::decode_unchecked(buf),
                }
            }
            ns_cmd::RSPN_ID => {
                let port_id = port_id(buf)?;
                NsRequest::RspnId {
                    port_id,
                    symbolic_name: get_symbolic_name(buf)?,
                }
            }
            ns_cmd::RFF_ID => {
                let port_id = port_id(buf)?;
                need(buf, 4)?;
                buf.advance(2);
                NsRequest::RffId {
                    port_id,
                    fc4_features: buf.get_u8(),
                    fc4_type: buf.get_u8(),
                }
            }
            ns_cmd::RSNN_NN => {
                need(buf, 8)?;
                let node_name = Wwnn(get_wwn(buf));
                NsRequest::RsnnNn {
                    node_name,
                    symbolic_name: get_symbolic_name(buf)?,
                }
            }
            command => NsRequest::Unsupported {
                command,
                payload: take_rest(buf),
            },
        })
    }

    /// This request as a name-server CT_IU (IN_ID 0, no maximum size).
    pub fn to_ct(&self) -> CtIu {
        let mut payload = Vec::new();
        self.encode_payload(&mut payload);
        CtIu {
            preamble: CtPreamble::name_server(self.command()),
            payload: Bytes::from(payload),
        }
    }

    /// Reads a request out of a CT_IU; fails with `Malformed` if the CT_IU is not a
    /// name-server request.
    pub fn from_ct(ct: &CtIu) -> Result<NsRequest, DecodeError> {
        if !ct.is_name_server() {
            return Err(DecodeError::Malformed {
                what: "CT_IU is not for the name server",
            });
        }
        if ct.is_reply() {
            return Err(DecodeError::Malformed {
                what: "CT_IU is a reply, not a request",
            });
        }
        NsRequest::decode_payload(ct.preamble.command_response, &mut ct.payload.clone())
    }
}

/// A port object as GA_NXT returns it: 620 bytes (FC-GS-7 GA_NXT accept; offsets as
/// Wireshark's `packet-fcdns.c` reads them).
///
/// ```text
/// 0   port type | port ID (3)        4   port name (8)
/// 12  sym. port name length | 255 bytes
/// 268 node name (8)                  276 sym. node name length | 255 bytes
/// 532 initial process associator (8) 540 node IP address (16)
/// 556 class of service (4)           560 FC-4 TYPEs (32)
/// 592 port IP address (16)           608 fabric port name (8)
/// 616 reserved | hard address (3)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortObject {
    /// Port type (see [`port_type`]).
    pub port_type: u8,
    /// The port's N_Port_ID.
    pub port_id: FcId,
    /// Port name.
    pub port_name: Wwpn,
    /// Symbolic port name, up to 255 bytes (truncated on encode).
    pub symbolic_port_name: Bytes,
    /// Node name.
    pub node_name: Wwnn,
    /// Symbolic node name, up to 255 bytes (truncated on encode).
    pub symbolic_node_name: Bytes,
    /// Initial process associator.
    pub initial_process_associator: [u8; 8],
    /// IP address of the node (IPv6 or IPv4-mapped), zeros when unknown.
    pub node_ip_address: [u8; 16],
    /// Class-of-service bits (see [`class_of_service`]).
    pub class_of_service: u32,
    /// Registered FC-4 TYPEs.
    pub fc4_types: Fc4Types,
    /// IP address of the port, zeros when unknown.
    pub port_ip_address: [u8; 16],
    /// Name of the F_Port the port is attached to.
    pub fabric_port_name: Wwpn,
    /// Hard address, 0 when none.
    pub hard_address: FcId,
}

impl PortObject {
    fn encode(&self, buf: &mut impl BufMut) {
        put_fcid_word(buf, self.port_type, self.port_id);
        buf.put_u64(self.port_name.0.0);
        put_fixed_name(buf, &self.symbolic_port_name);
        buf.put_u64(self.node_name.0.0);
        put_fixed_name(buf, &self.symbolic_node_name);
        buf.put_slice(&self.initial_process_associator);
        buf.put_slice(&self.node_ip_address);
        buf.put_u32(self.class_of_service);
        self.fc4_types.encode(buf);
        buf.put_slice(&self.port_ip_address);
        buf.put_u64(self.fabric_port_name.0.0);
        put_fcid_word(buf, 0, self.hard_address);
    }

    fn decode(buf: &mut impl Buf) -> Result<PortObject, DecodeError> {
        need(buf, GA_NXT_ACCEPT_LEN)?;
        let port_type = buf.get_u8();
        let port_id = get_fcid(buf);
        let port_name = Wwpn(get_wwn(buf));
        let symbolic_port_name = get_fixed_name(buf);
        let node_name = Wwnn(get_wwn(buf));
        let symbolic_node_name = get_fixed_name(buf);
        let initial_process_associator = get_array::<8>(buf);
        let node_ip_address = get_array::<16>(buf);
        let class_of_service = buf.get_u32();
        let fc4_types = Fc4Types::decode_unchecked(buf);
        let port_ip_address = get_array::<16>(buf);
        let fabric_port_name = Wwpn(get_wwn(buf));
        buf.advance(1);
        let hard_address = get_fcid(buf);
        Ok(PortObject {
            port_type,
            port_id,
            port_name,
            symbolic_port_name,
            node_name,
            symbolic_node_name,
            initial_process_associator,
            node_ip_address,
            class_of_service,
            fc4_types,
            port_ip_address,
            fabric_port_name,
            hard_address,
        })
    }
}

/// Writes a symbolic name as a length byte plus a fixed 255-byte zero-padded field.
fn put_fixed_name(buf: &mut impl BufMut, name: &Bytes) {
    let name = &name[..name.len().min(255)];
    buf.put_u8(len_u8(name.len()));
    buf.put_slice(name);
    buf.put_bytes(0, 255 - name.len());
}

/// Reads a length byte plus a fixed 255-byte field; the caller has checked 256 bytes.
fn get_fixed_name(buf: &mut impl Buf) -> Bytes {
    let len = usize::from(buf.get_u8());
    let field = buf.copy_to_bytes(255);
    field.slice(..len.min(255))
}

/// A name-server accept payload (FC-GS-7 §5.2.5); which variant depends on the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NsAccept {
    /// GA_NXT accept: the next port's object.
    GaNxt(Box<PortObject>),
    /// GPN_ID accept: the port name.
    GpnId(Wwpn),
    /// GNN_ID accept: the node name.
    GnnId(Wwnn),
    /// GID_PN accept: the port ID (low 3 bytes of one word).
    GidPn(FcId),
    /// GID_FT accept: port IDs, one word each, control byte 0x80 on the last.
    GidFt(Vec<FcId>),
    /// Accept with no payload (every registration: RPN_ID, RNN_ID, RFT_ID, …).
    Empty,
    /// Accept payload of a command this codec does not model; never empty.
    Other(Bytes),
}

/// The reason fields of a CT reject (FS_RJT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtReject {
    /// Reason code (see [`ct_reason`]).
    pub reason: u8,
    /// Reason explanation (see [`ns_explanation`]).
    pub explanation: u8,
    /// Vendor unique byte.
    pub vendor: u8,
}

/// A name-server reply: accept with its payload, or reject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NsResponse {
    /// FS_ACC.
    Accept(NsAccept),
    /// FS_RJT.
    Reject(CtReject),
}

impl NsResponse {
    /// A reject with the given reason and explanation.
    pub fn reject(reason: u8, explanation: u8) -> NsResponse {
        NsResponse::Reject(CtReject {
            reason,
            explanation,
            vendor: 0,
        })
    }

    /// Writes the payload that follows the preamble (nothing for a reject).
    pub fn encode_payload(&self, buf: &mut impl BufMut) {
        let NsResponse::Accept(acc) = self else {
            return;
        };
        match acc {
            NsAccept::GaNxt(p) => p.encode(buf),
            NsAccept::GpnId(w) => buf.put_u64(w.0.0),
            NsAccept::GnnId(w) => buf.put_u64(w.0.0),
            NsAccept::GidPn(id) => put_fcid_word(buf, 0, *id),
            NsAccept::GidFt(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    let last = if i + 1 == ids.len() { 0x80 } else { 0 };
                    put_fcid_word(buf, last, *id);
                }
            }
            NsAccept::Empty => {}
            NsAccept::Other(b) => buf.put_slice(b),
        }
    }

    /// Decodes an accept payload for a request with command code `request`.
    /// Registrations decode as `Empty` whatever follows; unknown commands as `Empty`
    /// or `Other`.
    pub fn decode_accept(request: u16, buf: &mut impl Buf) -> Result<NsAccept, DecodeError> {
        Ok(match request {
            ns_cmd::GA_NXT => NsAccept::GaNxt(Box::new(PortObject::decode(buf)?)),
            ns_cmd::GPN_ID => {
                need(buf, 8)?;
                NsAccept::GpnId(Wwpn(get_wwn(buf)))
            }
            ns_cmd::GNN_ID => {
                need(buf, 8)?;
                NsAccept::GnnId(Wwnn(get_wwn(buf)))
            }
            ns_cmd::GID_PN => {
                need(buf, 4)?;
                buf.advance(1);
                NsAccept::GidPn(get_fcid(buf))
            }
            ns_cmd::GID_FT => {
                let mut ids = Vec::new();
                while buf.has_remaining() {
                    need(buf, 4)?;
                    let control = buf.get_u8();
                    ids.push(get_fcid(buf));
                    if control & 0x80 != 0 {
                        return Ok(NsAccept::GidFt(ids));
                    }
                }
                if !ids.is_empty() {
                    return Err(DecodeError::Malformed {
                        what: "GID_FT accept list has no last-entry flag",
                    });
                }
                NsAccept::GidFt(ids)
            }
            ns_cmd::RPN_ID
            | ns_cmd::RNN_ID
            | ns_cmd::RFT_ID
            | ns_cmd::RSPN_ID
            | ns_cmd::RFF_ID
            | ns_cmd::RSNN_NN => NsAccept::Empty,
            _ if !buf.has_remaining() => NsAccept::Empty,
            _ => NsAccept::Other(take_rest(buf)),
        })
    }

    /// This reply as a name-server CT_IU.
    pub fn to_ct(&self) -> CtIu {
        let mut preamble = CtPreamble::name_server(CT_ACCEPT);
        if let NsResponse::Reject(r) = self {
            preamble.command_response = CT_REJECT;
            preamble.reason = r.reason;
            preamble.explanation = r.explanation;
            preamble.vendor = r.vendor;
        }
        let mut payload = Vec::new();
        self.encode_payload(&mut payload);
        CtIu {
            preamble,
            payload: Bytes::from(payload),
        }
    }

    /// Reads a reply to a request with command code `request` out of a CT_IU.
    pub fn from_ct(ct: &CtIu, request: u16) -> Result<NsResponse, DecodeError> {
        match ct.preamble.command_response {
            CT_ACCEPT => Ok(NsResponse::Accept(NsResponse::decode_accept(
                request,
                &mut ct.payload.clone(),
            )?)),
            CT_REJECT => Ok(NsResponse::Reject(CtReject {
                reason: ct.preamble.reason,
                explanation: ct.preamble.explanation,
                vendor: ct.preamble.vendor,
            })),
            _ => Err(DecodeError::Malformed {
                what: "CT_IU is neither an accept nor a reject",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::strategies::{arb_ct, arb_ns_request, arb_ns_response};
    use proptest::prelude::*;

    fn enc_ct(ct: &CtIu) -> Vec<u8> {
        let mut v = Vec::new();
        ct.encode(&mut v);
        v
    }

    /// FC-GS-7 §5.2.5.26: GID_FT for FCP = preamble (01 000000 FC 02 00 00 0171 …) + 00 00 00 08.
    #[test]
    fn gid_ft_request_known_answer() {
        let ct = NsRequest::GidFt {
            domain_scope: 0,
            area_scope: 0,
            fc4_type: 8,
        }
        .to_ct();
        assert_eq!(
            enc_ct(&ct),
            [
                0x01, 0, 0, 0, 0xFC, 0x02, 0, 0, 0x01, 0x71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08
            ]
        );
    }

    #[test]
    fn gid_ft_accept_marks_last_entry() {
        let r = NsResponse::Accept(NsAccept::GidFt(vec![
            FcId::new(0x010100),
            FcId::new(0x010200),
        ]));
        let ct = r.to_ct();
        assert_eq!(ct.preamble.command_response, 0x8002);
        assert_eq!(
            &ct.payload[..],
            &[0x00, 0x01, 0x01, 0x00, 0x80, 0x01, 0x02, 0x00]
        );
        assert_eq!(NsResponse::from_ct(&ct, ns_cmd::GID_FT).unwrap(), r);
    }

    /// FC-GS-7: RFT_ID with FCP sets bit 8 of word 0 (Wireshark tests `0x0100`).
    #[test]
    fn rft_id_fcp_bit() {
        let ct = NsRequest::RftId {
            port_id: FcId::new(0x010200),
            fc4_types: Fc4Types::fcp(),
        }
        .to_ct();
        assert_eq!(ct.payload.len(), 36);
        assert_eq!(&ct.payload[..8], &[0, 1, 2, 0, 0, 0, 0x01, 0x00]);
        let t = Fc4Types::fcp().with(0x20);
        assert!(t.contains(8) && t.contains(0x20) && !t.contains(1));
        assert_eq!(t.0[1], 1);
    }

    #[test]
    fn rff_id_and_reject_known_answers() {
        let ct = NsRequest::RffId {
            port_id: FcId::new(0x010200),
            fc4_features: fc4_features::INITIATOR,
            fc4_type: 8,
        }
        .to_ct();
        assert_eq!(&ct.payload[..], &[0, 1, 2, 0, 0, 0, 0x02, 0x08]);
        let rj = NsResponse::reject(
            ct_reason::UNABLE_TO_PERFORM,
            ns_explanation::FC4_TYPES_NOT_REGISTERED,
        )
        .to_ct();
        assert_eq!(&enc_ct(&rj)[8..], &[0x80, 0x01, 0, 0, 0, 0x09, 0x07, 0]);
    }

    #[test]
    fn ga_nxt_accept_is_620_bytes_with_wireshark_offsets() {
        let p = PortObject {
            port_type: port_type::N_PORT,
            port_id: FcId::new(0x010200),
            port_name: Wwpn(crate::wwn::Wwn(1)),
            symbolic_port_name: Bytes::from_static(b"host1 port0"),
            node_name: Wwnn(crate::wwn::Wwn(2)),
            symbolic_node_name: Bytes::new(),
            initial_process_associator: [0; 8],
            node_ip_address: [0; 16],
            class_of_service: class_of_service::CLASS_3,
            fc4_types: Fc4Types::fcp(),
            port_ip_address: [0; 16],
            fabric_port_name: Wwpn(crate::wwn::Wwn(3)),
            hard_address: FcId::new(0),
        };
        let ct = NsResponse::Accept(NsAccept::GaNxt(Box::new(p))).to_ct();
        let b = &ct.payload;
        assert_eq!(b.len(), GA_NXT_ACCEPT_LEN);
        assert_eq!(b[12], 11);
        assert_eq!(b[275], 2);
        assert_eq!(&b[556..560], &[0, 0, 0, 8]);
        assert_eq!(&b[560..564], &[0, 0, 1, 0]);
        assert_eq!(b[615], 3);
    }

    #[test]
    fn symbolic_names_are_word_padded() {
        let ct = NsRequest::RspnId {
            port_id: FcId::new(1),
            symbolic_name: Bytes::from_static(b"abc"),
        }
        .to_ct();
        assert_eq!(&ct.payload[..], &[0, 0, 0, 1, 3, b'a', b'b', b'c']);
        let ct = NsRequest::RsnnNn {
            node_name: Wwnn(crate::wwn::Wwn(5)),
            symbolic_name: Bytes::from_static(b"ab"),
        }
        .to_ct();
        assert_eq!(ct.payload.len(), 12);
    }

    proptest! {
        #[test]
        fn ct_roundtrip(ct in arb_ct()) {
            let b = Bytes::from(enc_ct(&ct));
            prop_assert_eq!(CtIu::decode(&mut b.clone()).unwrap(), ct);
        }

        #[test]
        fn request_roundtrip(r in arb_ns_request()) {
            let ct = r.to_ct();
            let b = Bytes::from(enc_ct(&ct));
            let back = CtIu::decode(&mut b.clone()).unwrap();
            prop_assert_eq!(NsRequest::from_ct(&back).unwrap(), r);
        }

        #[test]
        fn response_roundtrip((r, cmd) in arb_ns_response()) {
            let b = Bytes::from(enc_ct(&r.to_ct()));
            let back = CtIu::decode(&mut b.clone()).unwrap();
            prop_assert_eq!(NsResponse::from_ct(&back, cmd).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..700), cmd in any::<u16>()) {
            let bytes = Bytes::from(b);
            if let Ok(ct) = CtIu::decode(&mut bytes.clone()) {
                let _ = NsRequest::from_ct(&ct);
                let _ = NsResponse::from_ct(&ct, cmd);
            }
            for c in [ns_cmd::GA_NXT, ns_cmd::GID_FT, ns_cmd::RSPN_ID, ns_cmd::RSNN_NN, ns_cmd::RFT_ID, cmd] {
                let _ = NsRequest::decode_payload(c, &mut bytes.clone());
                let _ = NsResponse::decode_accept(c, &mut bytes.clone());
            }
        }
    }
}
