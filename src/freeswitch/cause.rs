//! The SIP code a failed file INVITE is reported with (`msrpcast_engine_rejected` takes 300–699).
//!
//! A failed sofia leg carries the final response's status in the channel variable
//! `sip_term_status` when there was one; otherwise (a timeout, a local error) only its hangup
//! cause, a `switch_call_cause_t`, which is mapped here — the same way mod_sofia maps causes to
//! responses, except that every timeout becomes 408, which the engine reads as "no answer in
//! time".

/// The code for a leg that ended without a 2xx: `sip_term_status` when it is a final failure
/// code (300–699), else the mapping of `cause`. Always in 300–699.
pub fn failure_code(cause: u32, sip_term_status: Option<&str>) -> u32 {
    if let Some(code) = sip_term_status.and_then(|s| s.trim().parse::<u32>().ok()) {
        if (300..=699).contains(&code) {
            return code;
        }
    }
    cause_to_sip(cause)
}

/// `switch_call_cause_t` (Q.850 numbers and FreeSWITCH's own above 486) to a SIP failure code.
pub fn cause_to_sip(cause: u32) -> u32 {
    match cause {
        1..=3 => 404, // UNALLOCATED_NUMBER, NO_ROUTE_TRANSIT_NET, NO_ROUTE_DESTINATION
        17 => 486,    // USER_BUSY
        18 | 102 | 802 | 807 => 408, // NO_USER_RESPONSE, RECOVERY_ON_TIMER_EXPIRE, ALLOTTED_TIMEOUT, PROGRESS_TIMEOUT
        19 | 20 => 480,              // NO_ANSWER, SUBSCRIBER_ABSENT
        21 => 603,                   // CALL_REJECTED
        22 | 23 => 410,              // NUMBER_CHANGED, REDIRECTION_TO_NEW_DESTINATION
        25 => 483,                   // EXCHANGE_ROUTING_ERROR
        27 | 811 => 502,             // DESTINATION_OUT_OF_ORDER, INVALID_PROFILE
        28 | 808 | 810 => 484,       // INVALID_NUMBER_FORMAT, INVALID_GATEWAY, INVALID_URL
        29 | 69 | 79 => 501, // FACILITY_REJECTED, FACILITY_NOT_IMPLEMENTED, SERVICE_NOT_IMPLEMENTED
        34 | 38 | 41 | 42 | 44 | 58 | 701 | 809 => 503, // congestion, temporary failure, SYSTEM_SHUTDOWN, GATEWAY_DOWN
        52 | 54 | 57 => 403,                            // call barred, BEARERCAPABILITY_NOTAUTH
        65 | 88 => 488,   // BEARERCAPABILITY_NOTIMPL, INCOMPATIBLE_DESTINATION
        487 | 703 => 487, // ORIGINATOR_CANCEL, MANAGER_REQUEST (we hung it up)
        806 => 404,       // USER_NOT_REGISTERED
        815 => 600,       // BUSY_EVERYWHERE
        816 | 825 => 603, // DECLINE, REJECT_ALL
        817 => 604,       // DOES_NOT_EXIST_ANYWHERE
        818 => 606,       // NOT_ACCEPTABLE
        819 => 607,       // UNWANTED
        _ => 480,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_status_wins_when_it_is_a_failure() {
        assert_eq!(failure_code(21, Some("486")), 486);
        assert_eq!(failure_code(21, Some(" 415 ")), 415);
        assert_eq!(failure_code(21, Some("200")), 603);
        assert_eq!(failure_code(21, Some("abc")), 603);
        assert_eq!(failure_code(21, None), 603);
    }

    #[test]
    fn causes_map_into_range() {
        assert_eq!(cause_to_sip(17), 486);
        assert_eq!(cause_to_sip(19), 480);
        assert_eq!(cause_to_sip(102), 408);
        assert_eq!(cause_to_sip(807), 408);
        assert_eq!(cause_to_sip(487), 487);
        assert_eq!(cause_to_sip(41), 503);
        assert_eq!(cause_to_sip(16), 480); // NORMAL_CLEARING before an answer
        for c in 0..1000 {
            assert!((300..=699).contains(&cause_to_sip(c)), "{c}");
        }
    }
}
