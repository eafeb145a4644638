//! Mouse and keyboard input from the technician, to be injected into the
//! end user's display. Keys travel as X keysyms (what a key means, not where
//! it is on a keyboard), so the receiving side maps them to its own keymap.

use serde::{Deserialize, Serialize};

use crate::SourceError;

/// One input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputEvent {
    /// The pointer moves to (x, y) on the screen.
    Move {
        /// Pixels from the left edge.
        x: i32,
        /// Pixels from the top edge.
        y: i32,
    },
    /// Mouse button 1 (left), 2 (middle), 3 (right), 4/5 (wheel up/down).
    Button {
        /// The button's number.
        button: u8,
        /// Pressed (true) or released.
        press: bool,
    },
    /// A key, by X keysym (e.g. 0x61 `a`, 0xff0d Return).
    Key {
        /// The X keysym.
        keysym: u32,
        /// Pressed (true) or released.
        press: bool,
    },
}

impl InputEvent {
    /// Refuses events no real input device makes.
    pub fn check(&self) -> Result<(), String> {
        match self {
            InputEvent::Button { button, .. } if !(1..=9).contains(button) => {
                Err(format!("mouse button {button} does not exist"))
            }
            InputEvent::Key { keysym, .. } if *keysym == 0 || *keysym > 0x1fff_ffff => {
                Err(format!("keysym {keysym:#x} is not a key"))
            }
            _ => Ok(()),
        }
    }
}

/// Something input can be injected into (a display).
pub trait Inject {
    /// Injects one event.
    fn inject(&mut self, event: &InputEvent) -> Result<(), SourceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_a_stable_json_form_and_are_checked() {
        let e = InputEvent::Key {
            keysym: 0x61,
            press: true,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"kind":"key","keysym":97,"press":true}"#
        );
        assert!(e.check().is_ok());
        assert!(InputEvent::Button {
            button: 0,
            press: true
        }
        .check()
        .is_err());
        assert!(InputEvent::Key {
            keysym: 0,
            press: true
        }
        .check()
        .is_err());
        assert!(
            InputEvent::Move { x: -5, y: 99999 }.check().is_ok(),
            "moves are clamped, not refused"
        );
    }
}
