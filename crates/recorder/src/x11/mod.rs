//! An X11 display, over x11rb's pure-Rust connection: frames and the
//! pointer read from it ([`X11`]), mouse and keyboard injected into it
//! ([`X11Input`]).
//!
//! Frames are read from the root window through MIT-SHM where the server
//! offers it (a local display): the server writes the screen into a memfd
//! it shares with us, and we read it back with `pread`, so no `unsafe`
//! mapping is needed and 8 MB a frame do not cross the socket. Elsewhere (a
//! remote display, no MIT-SHM 1.2) frames come with a plain `GetImage`.
//! Where the DAMAGE extension is there, a screen nothing drew on since the
//! last frame is not captured at all, so a still desktop costs next to no
//! CPU. The pointer comes from XFixes, apart from the screen, so cursor
//! moves cost no tiles.
//!
//! Input goes through XTEST. Keys arrive as keysyms (what the technician
//! meant) and are typed on the end user's own layout ([`keymap`]): the
//! key and shift level that carry the keysym, with Shift and AltGr set for
//! the stroke and put back after it.

mod capture;
mod input;
pub mod keymap;

pub use capture::X11;
pub use input::X11Input;
