//! Mouse and keyboard input from the technician, to be injected into the
//! end user's display. Keys travel as X keysyms (what a key means, not where
//! it is on a keyboard), so the receiving side types them on its own layout:
//! a character key types its character whatever the two layouts are, and a
//! function key (Shift, Control, arrows, F1...) is held until released.

use serde::{Deserialize, Serialize};

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
    /// A key, by X keysym (e.g. 0x61 `a`, 0xff0d Return). A character is
    /// typed when pressed (its release does nothing); a function key is
    /// held from its press to its release.
    Key {
        /// The X keysym.
        keysym: u32,
        /// Pressed (true) or released.
        press: bool,
    },
    /// Lets go of every key and button still held (the technician's page
    /// lost the focus, so the releases would never come).
    ReleaseAll,
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

/// Why an input event could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The event is not one a real device makes.
    #[error("{0}")]
    Invalid(String),
    /// No key types the keysym, and no free keycode is left to bind it to.
    #[error("no key on the end user's keyboard types {0}, and no free key is left to bind it to")]
    Untypable(String),
    /// The display cannot take input.
    #[error("the display {display} has no XTEST extension: input cannot be injected")]
    NoXtest {
        /// The display's name.
        display: String,
    },
    /// Talking to the display failed.
    #[error("the X display: {0}")]
    Display(String),
}

/// Something input can be injected into (a display). Whatever fails, no
/// key or button is left held.
pub trait Inject {
    /// Injects one event.
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError>;
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
