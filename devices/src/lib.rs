//! Devices (DESIGN.md §5): SCSI over FCP, arrays, hosts, tapes and relays. Grown in the SCSI/hosts issue.
