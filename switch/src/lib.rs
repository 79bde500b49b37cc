//! The intelligent switch (seed 003, DESIGN.md §6). Grown in the intelligent-switch issue.
