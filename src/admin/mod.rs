//! Admin changes to queued messages — `postern queue show|delete|hold|
//! release|retry|bounce` — and the request entries through which callers
//! who cannot write the queue ask the daemon for a change. The front end
//! (`run.rs`) dispatches; this service exposes the verbs.
//!
//! Who may change what. The queue (`queue/`, `state/`, `tmp/`) belongs to
//! the spool owner (user `postern`), so a change is made **directly** by
//! root (who first becomes the spool owner, like a queue run) or by the
//! spool owner itself — in an unprivileged development setup that is the
//! developer, and members of group `postern` act directly too, the file
//! modes deciding. Everyone else goes through a **request** that the daemon
//! authorises and applies (see [`requests`]).
//!
//! Every change takes the per-message lock (`spool::queue::open(.., true)`,
//! waiting up to 15 seconds while a delivery holds it), so it never races a
//! delivery; state is written with `spool::queue::save_state`; each action
//! is logged (`ID: removed by uid N (postern queue delete)`, `ID: held by
//! uid N (…)`, …) and a removal is recorded in the event log. After a
//! change a running daemon is poked (`R`: rescan the state; `F` for `retry
//! ALL`). `retry` with no daemon and a caller allowed to deliver (root, or
//! an unprivileged development setup) delivers at once in this process, as
//! does the DSN of `bounce`.
//!
//! | file | owns |
//! | --- | --- |
//! | `caller.rs` | who is asking ([`Caller`]) and what they may do |
//! | `verbs.rs` | the queue verbs, made directly or through a request |
//! | `requests.rs` | request entries: committing one and waiting; authorising and applying one in the daemon's pickup |
//! | `apply.rs` | one change to one locked message (shared by both) |
//! | `show.rs` | `postern queue show` |
//! | `guard.rs` | the outbound guard's suppression list (`queue suppressed`, `queue unsuppress`) |

mod apply;
pub mod caller;
pub mod guard;
pub mod requests;
pub mod show;
pub mod verbs;

pub use crate::spool::request::{Op, Target};
pub use apply::BOUNCE_REASON;
pub use caller::Caller;
