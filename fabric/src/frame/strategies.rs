//! proptest strategies for every frame type (test-only).

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::bls::{BaAcc, BaRjt};
use super::ct::{
    CtIu, CtPreamble, CtReject, Fc4Types, NsAccept, NsRequest, NsResponse, PortObject, ns_cmd,
};
use super::els::{
    AccPayload, AddressFormat, ClassServiceParams, Els, ElsCode, Logo, LsRjt, Prli, PrliPage, Rscn,
    RscnPage, Scr, ServiceParams,
};
use super::fcp::{FcpCmnd, FcpRsp, FcpXferRdy};
use super::header::FcHeader;
use super::{Iu, ftype, rctl};
use crate::fcid::FcId;
use crate::wwn::{Wwn, Wwnn, Wwpn};

pub(crate) fn arb_fcid() -> impl Strategy<Value = FcId> {
    (0u32..0x0100_0000).prop_map(FcId::new)
}

pub(crate) fn arb_wwpn() -> impl Strategy<Value = Wwpn> {
    any::<u64>().prop_map(|v| Wwpn(Wwn(v)))
}

pub(crate) fn arb_wwnn() -> impl Strategy<Value = Wwnn> {
    any::<u64>().prop_map(|v| Wwnn(Wwn(v)))
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn arb_nonempty_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=max).prop_map(Bytes::from)
}

pub(crate) fn arb_header() -> impl Strategy<Value = FcHeader> {
    (
        (
            any::<u8>(),
            arb_fcid(),
            any::<u8>(),
            arb_fcid(),
            any::<u8>(),
            0u32..0x0100_0000,
        ),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (r_ctl, d_id, cs_ctl, s_id, fc_type, f_ctl),
                (seq_id, df_ctl, seq_cnt, ox_id, rx_id, parameter),
            )| {
                FcHeader {
                    r_ctl,
                    d_id,
                    cs_ctl,
                    s_id,
                    fc_type,
                    f_ctl,
                    seq_id,
                    df_ctl,
                    seq_cnt,
                    ox_id,
                    rx_id,
                    parameter,
                }
            },
        )
}

fn arb_class() -> impl Strategy<Value = ClassServiceParams> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(|(a, b, c, d, e, f, g)| ClassServiceParams {
            service_options: a,
            initiator_control: b,
            recipient_control: c,
            receive_data_field_size: d,
            concurrent_sequences: e,
            end_to_end_credit: f,
            open_sequences_per_exchange: g,
        })
}

pub(crate) fn arb_service_params() -> impl Strategy<Value = ServiceParams> {
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            0u8..16,
            0u16..4096,
            any::<u32>(),
            any::<u32>(),
        ),
        (
            arb_wwpn(),
            arb_wwnn(),
            [arb_class(), arb_class(), arb_class(), arb_class()],
            any::<[u8; 16]>(),
        ),
    )
        .prop_map(
            |(
                (
                    version,
                    bb_credit,
                    common_features,
                    bb_sc_number,
                    receive_data_field_size,
                    csp_word2,
                    e_d_tov,
                ),
                (port_name, node_name, classes, vendor_version),
            )| ServiceParams {
                version,
                bb_credit,
                common_features,
                bb_sc_number,
                receive_data_field_size,
                csp_word2,
                e_d_tov,
                port_name,
                node_name,
                classes,
                vendor_version,
            },
        )
}

fn arb_prli_page() -> impl Strategy<Value = PrliPage> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[bool; 3]>(),
        0u8..16,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                fc4_type,
                type_extension,
                f,
                response_code,
                originator_pa,
                responder_pa,
                service_params,
            )| PrliPage {
                fc4_type,
                type_extension,
                originator_pa_valid: f[0],
                responder_pa_valid: f[1],
                establish_image_pair: f[2],
                response_code,
                originator_pa,
                responder_pa,
                service_params,
            },
        )
}

pub(crate) fn arb_prli() -> impl Strategy<Value = Prli> {
    vec(arb_prli_page(), 0..4).prop_map(|pages| Prli { pages })
}

fn arb_rscn() -> impl Strategy<Value = Rscn> {
    let fmt = prop::sample::select(vec![
        AddressFormat::Port,
        AddressFormat::Area,
        AddressFormat::Domain,
        AddressFormat::Fabric,
    ]);
    vec(
        (fmt, 0u8..16, arb_fcid()).prop_map(|(format, event_qualifier, fc_id)| RscnPage {
            format,
            event_qualifier,
            fc_id,
        }),
        0..8,
    )
    .prop_map(|pages| Rscn { pages })
}

fn arb_unsupported_els_code() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("known ELS code", |c| {
        matches!(ElsCode::from_u8(*c), ElsCode::Unsupported(_))
    })
}

/// ELS payloads together with the request hint that decodes them back.
pub(crate) fn arb_els_with_hint() -> impl Strategy<Value = (Els, Option<ElsCode>)> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(reason, explanation, vendor)| (
            Els::LsRjt(LsRjt {
                reason,
                explanation,
                vendor
            }),
            None
        )),
        Just((Els::Acc(AccPayload::Plain), None)),
        arb_service_params().prop_map(|sp| (Els::Acc(AccPayload::Login(sp)), Some(ElsCode::Plogi))),
        arb_prli().prop_map(|p| (Els::Acc(AccPayload::Prli(p)), Some(ElsCode::Prli))),
        arb_nonempty_bytes(64).prop_map(|b| (
            Els::Acc(AccPayload::Other(b)),
            Some(ElsCode::Unsupported(0x0E))
        )),
        arb_service_params().prop_map(|sp| (Els::Plogi(sp), None)),
        arb_service_params().prop_map(|sp| (Els::Flogi(sp), None)),
        arb_service_params().prop_map(|sp| (Els::Fdisc(sp), None)),
        (arb_fcid(), arb_wwpn()).prop_map(|(n_port_id, port_name)| (
            Els::Logo(Logo {
                n_port_id,
                port_name
            }),
            None
        )),
        arb_prli().prop_map(|p| (Els::Prli(p), None)),
        arb_prli().prop_map(|p| (Els::Prlo(p), None)),
        any::<u8>().prop_map(|function| (Els::Scr(Scr { function }), None)),
        arb_rscn().prop_map(|r| (Els::Rscn(r), None)),
        (arb_unsupported_els_code(), arb_bytes(64))
            .prop_map(|(code, body)| (Els::Unsupported { code, body }, None)),
    ]
}

pub(crate) fn arb_els() -> impl Strategy<Value = Els> {
    arb_els_with_hint().prop_map(|(e, _)| e)
}

pub(crate) fn arb_ct() -> impl Strategy<Value = CtIu> {
    (
        (
            any::<u8>(),
            arb_fcid(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        arb_bytes(64),
    )
        .prop_map(
            |(
                (revision, in_id, gs_type, gs_subtype, options),
                (command_response, max_residual_size_words, reason, explanation, vendor),
                payload,
            )| CtIu {
                preamble: CtPreamble {
                    revision,
                    in_id,
                    gs_type,
                    gs_subtype,
                    options,
                    command_response,
                    max_residual_size_words,
                    reason,
                    explanation,
                    vendor,
                },
                payload,
            },
        )
}

fn arb_fc4_types() -> impl Strategy<Value = Fc4Types> {
    any::<[u32; 8]>().prop_map(Fc4Types)
}

const KNOWN_NS: [u16; 11] = [
    ns_cmd::GA_NXT,
    ns_cmd::GPN_ID,
    ns_cmd::GNN_ID,
    ns_cmd::GID_PN,
    ns_cmd::GID_FT,
    ns_cmd::RPN_ID,
    ns_cmd::RNN_ID,
    ns_cmd::RFT_ID,
    ns_cmd::RSPN_ID,
    ns_cmd::RFF_ID,
    ns_cmd::RSNN_NN,
];

fn arb_unknown_ns_cmd() -> impl Strategy<Value = u16> {
    (0u16..0x8000).prop_filter("known name-server command", |c| !KNOWN_NS.contains(c))
}

pub(crate) fn arb_ns_request() -> impl Strategy<Value = NsRequest> {
    prop_oneof![
        arb_fcid().prop_map(|port_id| NsRequest::GaNxt { port_id }),
        arb_fcid().prop_map(|port_id| NsRequest::GpnId { port_id }),
        arb_fcid().prop_map(|port_id| NsRequest::GnnId { port_id }),
        arb_wwpn().prop_map(|port_name| NsRequest::GidPn { port_name }),
        any::<[u8; 3]>().prop_map(|b| NsRequest::GidFt {
            domain_scope: b[0],
            area_scope: b[1],
            fc4_type: b[2]
        }),
        (arb_fcid(), arb_wwpn())
            .prop_map(|(port_id, port_name)| NsRequest::RpnId { port_id, port_name }),
        (arb_fcid(), arb_wwnn())
            .prop_map(|(port_id, node_name)| NsRequest::RnnId { port_id, node_name }),
        (arb_fcid(), arb_fc4_types())
            .prop_map(|(port_id, fc4_types)| NsRequest::RftId { port_id, fc4_types }),
        (arb_fcid(), arb_bytes(255)).prop_map(|(port_id, symbolic_name)| NsRequest::RspnId {
            port_id,
            symbolic_name
        }),
        (arb_fcid(), any::<u8>(), any::<u8>()).prop_map(|(port_id, fc4_features, fc4_type)| {
            NsRequest::RffId {
                port_id,
                fc4_features,
                fc4_type,
            }
        }),
        (arb_wwnn(), arb_bytes(255)).prop_map(|(node_name, symbolic_name)| NsRequest::RsnnNn {
            node_name,
            symbolic_name
        }),
        (arb_unknown_ns_cmd(), arb_bytes(64))
            .prop_map(|(command, payload)| NsRequest::Unsupported { command, payload }),
    ]
}

fn arb_port_object() -> impl Strategy<Value = PortObject> {
    (
        (
            any::<u8>(),
            arb_fcid(),
            arb_wwpn(),
            arb_bytes(255),
            arb_wwnn(),
            arb_bytes(255),
        ),
        (
            any::<[u8; 8]>(),
            any::<[u8; 16]>(),
            any::<u32>(),
            arb_fc4_types(),
            any::<[u8; 16]>(),
            arb_wwpn(),
            arb_fcid(),
        ),
    )
        .prop_map(
            |(
                (port_type, port_id, port_name, symbolic_port_name, node_name, symbolic_node_name),
                (
                    initial_process_associator,
                    node_ip_address,
                    class_of_service,
                    fc4_types,
                    port_ip_address,
                    fabric_port_name,
                    hard_address,
                ),
            )| PortObject {
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
            },
        )
}

/// Name-server replies with the request command they answer.
pub(crate) fn arb_ns_response() -> impl Strategy<Value = (NsResponse, u16)> {
    let acc = |a: NsAccept, c: u16| (NsResponse::Accept(a), c);
    prop_oneof![
        arb_port_object().prop_map(move |p| acc(NsAccept::GaNxt(Box::new(p)), ns_cmd::GA_NXT)),
        arb_wwpn().prop_map(move |w| acc(NsAccept::GpnId(w), ns_cmd::GPN_ID)),
        arb_wwnn().prop_map(move |w| acc(NsAccept::GnnId(w), ns_cmd::GNN_ID)),
        arb_fcid().prop_map(move |id| acc(NsAccept::GidPn(id), ns_cmd::GID_PN)),
        vec(arb_fcid(), 0..20).prop_map(move |ids| acc(NsAccept::GidFt(ids), ns_cmd::GID_FT)),
        prop::sample::select(KNOWN_NS[5..].to_vec()).prop_map(move |c| acc(NsAccept::Empty, c)),
        (arb_unknown_ns_cmd(), arb_nonempty_bytes(64))
            .prop_map(move |(c, b)| acc(NsAccept::Other(b), c)),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u16>()).prop_map(
            |(reason, explanation, vendor, c)| (
                NsResponse::Reject(CtReject {
                    reason,
                    explanation,
                    vendor
                }),
                c
            )
        ),
    ]
}

pub(crate) fn arb_fcp_cmnd() -> impl Strategy<Value = FcpCmnd> {
    (
        (
            any::<[u8; 8]>(),
            any::<u8>(),
            0u8..16,
            0u8..8,
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (0usize..64).prop_flat_map(|k| vec(any::<u8>(), 16 + 4 * k)),
        any::<u32>(),
    )
        .prop_map(
            |(
                (lun, crn, priority, task_attribute, task_mgmt_flags, rddata, wrdata),
                cdb,
                fcp_dl,
            )| FcpCmnd {
                lun,
                crn,
                priority,
                task_attribute,
                task_mgmt_flags,
                rddata,
                wrdata,
                cdb: Bytes::from(cdb),
                fcp_dl,
            },
        )
}

pub(crate) fn arb_xfer_rdy() -> impl Strategy<Value = FcpXferRdy> {
    (any::<u32>(), any::<u32>()).prop_map(|(rel_offset, burst_len)| FcpXferRdy {
        rel_offset,
        burst_len,
    })
}

pub(crate) fn arb_fcp_rsp() -> impl Strategy<Value = FcpRsp> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<[bool; 3]>(),
        any::<u32>(),
        arb_bytes(8),
        arb_bytes(96),
    )
        .prop_map(
            |(status, retry_delay_timer, f, resid, rsp_info, sense)| FcpRsp {
                status,
                retry_delay_timer,
                confirm_requested: f[0],
                resid_under: f[1],
                resid_over: f[2],
                resid,
                rsp_info,
                sense,
            },
        )
}

pub(crate) fn arb_ba_acc() -> impl Strategy<Value = BaAcc> {
    (
        any::<bool>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(seq_id_valid, seq_id, ox_id, rx_id, low_seq_cnt, high_seq_cnt)| BaAcc {
                seq_id_valid,
                seq_id,
                ox_id,
                rx_id,
                low_seq_cnt,
                high_seq_cnt,
            },
        )
}

pub(crate) fn arb_ba_rjt() -> impl Strategy<Value = BaRjt> {
    (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(reason, explanation, vendor)| BaRjt {
        reason,
        explanation,
        vendor,
    })
}

/// (R_CTL, TYPE) pairs that `Frame::iu` maps to a typed IU.
fn is_known_route(r_ctl: u8, fc_type: u8) -> bool {
    matches!(
        (r_ctl, fc_type),
        (rctl::ELS_REQUEST | rctl::ELS_REPLY, ftype::ELS)
            | (rctl::CT_REQUEST | rctl::CT_REPLY, ftype::CT)
            | (
                rctl::FCP_CMND | rctl::FCP_XFER_RDY | rctl::FCP_DATA | rctl::FCP_RSP,
                ftype::FCP
            )
            | (rctl::BA_ABTS | rctl::BA_ACC | rctl::BA_RJT, ftype::BLS)
            | (
                rctl::UNSOLICITED_CONTROL | rctl::SOLICITED_CONTROL,
                ftype::SW_ILS
            )
    )
}

/// Every IU kind, with the ELS hint needed to decode it back.
pub(crate) fn arb_iu_with_hint() -> impl Strategy<Value = (Iu, Option<ElsCode>)> {
    prop_oneof![
        arb_els_with_hint().prop_map(|(e, h)| (Iu::Els(e), h)),
        arb_ct().prop_map(|c| (Iu::Ct(c), None)),
        arb_fcp_cmnd().prop_map(|c| (Iu::FcpCmnd(c), None)),
        arb_xfer_rdy().prop_map(|x| (Iu::FcpXferRdy(x), None)),
        arb_bytes(256).prop_map(|b| (Iu::FcpData(b), None)),
        arb_fcp_rsp().prop_map(|r| (Iu::FcpRsp(r), None)),
        Just((Iu::Abts, None)),
        arb_ba_acc().prop_map(|a| (Iu::BaAcc(a), None)),
        arb_ba_rjt().prop_map(|r| (Iu::BaRjt(r), None)),
        arb_bytes(64).prop_map(|b| (Iu::SwIls(b), None)),
        (any::<u8>(), any::<u8>(), arb_bytes(64))
            .prop_filter("routes to a typed IU", |(r, t, _)| !is_known_route(*r, *t))
            .prop_map(|(r_ctl, fc_type, payload)| (
                Iu::Unsupported {
                    r_ctl,
                    fc_type,
                    payload
                },
                None
            )),
    ]
}
