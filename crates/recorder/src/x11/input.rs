//! Mouse and keyboard injected into an X display through XTEST, typed on
//! the end user's own layout.
//!
//! A character is typed with the key and level that carry it: Shift and the
//! level-three modifier (AltGr) are pressed or let go for that one stroke,
//! and put back as they were right after. A character no key carries is
//! bound to a free keycode, as x11vnc and xdotool do; bindings are reused,
//! least recently used first, and undone when control ends (never at once:
//! the receiving program looks the key up only when it reads the event).
//! Every key and button the technician holds is known, and let go on
//! `ReleaseAll`, on any failure, and when the injector is dropped.

use std::collections::HashMap;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{
    ConnectionExt as _, Window, BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, KEY_PRESS_EVENT,
    KEY_RELEASE_EVENT, MOTION_NOTIFY_EVENT,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use super::keymap::{self, Keymap, Stroke, LOCK, SHIFT};
use crate::input::{Inject, InputError, InputEvent};

/// An X display taking the technician's mouse and keyboard.
pub struct X11Input {
    conn: RustConnection,
    root: Window,
    width: u16,
    height: u16,
    /// The keyboard as last read (`None`: to be read again, as after a
    /// `MappingNotify`).
    keymap: Option<Keymap>,
    /// The keycodes that carried nothing when control began.
    spare: Option<Vec<u8>>,
    /// Spare keycodes bound to keysyms, least recently used first.
    bound: Vec<(u8, u32)>,
    /// Function keys held down: keysym → the keycode pressed for it.
    held_keys: HashMap<u32, u8>,
    /// Mouse buttons held down.
    held_buttons: Vec<u8>,
}

impl std::fmt::Debug for X11Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X11Input({}x{})", self.width, self.height)
    }
}

fn display_error(what: impl std::fmt::Display) -> InputError {
    InputError::Display(what.to_string())
}

/// A modifier pressed (true) or let go (false) for one stroke, to be undone after it.
type Undo = Vec<(u8, bool)>;

/// A modifier a stroke may need on or off.
struct Modifier {
    /// Its index in the modifier map (its bit in the state).
    index: usize,
    /// The key that turns it on.
    key: Option<u8>,
    /// The keys that hold it, any of which may be down.
    holders: Vec<u8>,
}

impl Modifier {
    fn new(keymap: &Keymap, index: usize, key: Option<u8>) -> Self {
        Self {
            index,
            key,
            holders: keymap.modifier_keys(index).to_vec(),
        }
    }
}

impl X11Input {
    /// Connects to `display` (e.g. `:1`; `None` for `$DISPLAY`), which must
    /// have the XTEST extension.
    pub fn open(display: Option<&str>) -> Result<Self, InputError> {
        let name = display.unwrap_or("$DISPLAY").to_owned();
        let (conn, screen) = x11rb::connect(display)
            .map_err(|e| display_error(format!("cannot connect to X display {name}: {e}")))?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .ok_or_else(|| display_error(format!("display {name} has no screen {screen}")))?;
        let (root, width, height) = (root.root, root.width_in_pixels, root.height_in_pixels);
        if !matches!(
            conn.extension_information(x11rb::protocol::xtest::X11_EXTENSION_NAME),
            Ok(Some(_))
        ) {
            return Err(InputError::NoXtest { display: name });
        }
        Ok(Self {
            conn,
            root,
            width,
            height,
            keymap: None,
            spare: None,
            bound: Vec::new(),
            held_keys: HashMap::new(),
            held_buttons: Vec::new(),
        })
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), InputError> {
        self.conn
            .xtest_fake_input(kind, detail, 0, self.root, x, y, 0)
            .map_err(display_error)?;
        Ok(())
    }

    fn key(&self, keycode: u8, press: bool) -> Result<(), InputError> {
        let kind = if press {
            KEY_PRESS_EVENT
        } else {
            KEY_RELEASE_EVENT
        };
        self.fake(kind, keycode, 0, 0)
    }

    /// The keyboard mapping, read again after the server said it changed.
    fn keymap(&mut self) -> Result<&mut Keymap, InputError> {
        while let Some(event) = self.conn.poll_for_event().map_err(display_error)? {
            if matches!(event, Event::MappingNotify(_)) {
                self.keymap = None;
            }
        }
        if self.keymap.is_none() {
            let setup = self.conn.setup();
            let (min, max) = (setup.min_keycode, setup.max_keycode);
            let mapping = self
                .conn
                .get_keyboard_mapping(min, max - min + 1)
                .map_err(display_error)?;
            let modifiers = self.conn.get_modifier_mapping().map_err(display_error)?;
            let mapping = mapping.reply().map_err(display_error)?;
            let modifiers = modifiers.reply().map_err(display_error)?;
            let keymap = Keymap::new(
                min,
                mapping.keysyms_per_keycode,
                mapping.keysyms,
                modifiers.keycodes_per_modifier(),
                &modifiers.keycodes,
            );
            self.spare.get_or_insert_with(|| keymap.spare());
            self.keymap = Some(keymap);
        }
        // Just filled if it was empty.
        self.keymap
            .as_mut()
            .ok_or_else(|| display_error("the keyboard mapping could not be read"))
    }

    /// How to type `keysym`: its own key, or a spare keycode bound to it.
    fn stroke(&mut self, keysym: u32) -> Result<Stroke, InputError> {
        if let Some(stroke) = self.keymap()?.stroke(keysym) {
            if let Some(i) = self.bound.iter().position(|&(k, _)| k == stroke.keycode) {
                let recent = self.bound.remove(i);
                self.bound.push(recent);
            }
            return Ok(stroke);
        }
        let spare = self.spare.clone().unwrap_or_default();
        let keycode = match spare
            .iter()
            .find(|k| !self.bound.iter().any(|(b, _)| b == *k))
        {
            Some(&free) => free,
            None if !self.bound.is_empty() => self.bound.remove(0).0,
            None => return Err(InputError::Untypable(keymap::describe(keysym))),
        };
        self.conn
            .change_keyboard_mapping(1, keycode, 2, &[keysym, keysym])
            .map_err(display_error)?
            .check()
            .map_err(display_error)?;
        self.bound.push((keycode, keysym));
        self.keymap()?.bind(keycode, keysym);
        Ok(Stroke {
            keycode,
            shift: false,
            level3: false,
            alphabetic: false,
        })
    }

    /// Types the character `keysym` on the end user's layout.
    fn type_char(&mut self, keysym: u32) -> Result<(), InputError> {
        let stroke = self.stroke(keysym)?;
        let keymap = self.keymap()?;
        let shift = Modifier::new(keymap, SHIFT, keymap.modifier_keys(SHIFT).first().copied());
        let level3 = keymap
            .level3()
            .map(|(index, key)| Modifier::new(keymap, index, Some(key)));
        // Both asked before either answer is awaited: one round trip.
        let pointer = self.conn.query_pointer(self.root).map_err(display_error)?;
        let keys = self.conn.query_keymap().map_err(display_error)?;
        let state = u16::from(pointer.reply().map_err(display_error)?.mask);
        let down = keys.reply().map_err(display_error)?.keys;
        let mut undo = Undo::new();
        let lock = state & (1 << LOCK) != 0;
        self.set(
            &shift,
            stroke.shift ^ (stroke.alphabetic && lock),
            state,
            &down,
            &mut undo,
        )?;
        if let Some(level3) = &level3 {
            self.set(level3, stroke.level3, state, &down, &mut undo)?;
        }
        self.key(stroke.keycode, true)?;
        self.key(stroke.keycode, false)?;
        for &(keycode, pressed) in undo.iter().rev() {
            self.key(keycode, !pressed)?;
        }
        Ok(())
    }

    /// Turns `modifier` on or off for one stroke, noting how to undo it.
    fn set(
        &self,
        modifier: &Modifier,
        want: bool,
        state: u16,
        down: &[u8; 32],
        undo: &mut Undo,
    ) -> Result<(), InputError> {
        if want == (state & (1 << modifier.index) != 0) {
            return Ok(());
        }
        if want {
            let key = modifier.key.ok_or_else(|| {
                InputError::Untypable(format!("a level needing modifier {}", modifier.index))
            })?;
            self.key(key, true)?;
            undo.push((key, true));
        } else {
            let pressed = |k: u8| down[usize::from(k / 8)] & (1 << (k % 8)) != 0;
            for &held in modifier.holders.iter().filter(|&&k| pressed(k)) {
                self.key(held, false)?;
                undo.push((held, false));
            }
        }
        Ok(())
    }

    fn one(&mut self, event: &InputEvent) -> Result<(), InputError> {
        event.check().map_err(InputError::Invalid)?;
        match *event {
            InputEvent::Move { x, y } => {
                let x = x.clamp(0, i32::from(self.width) - 1) as i16;
                let y = y.clamp(0, i32::from(self.height) - 1) as i16;
                self.fake(MOTION_NOTIFY_EVENT, 0, x, y)
            }
            InputEvent::Button { button, press } => {
                self.held_buttons.retain(|&b| b != button);
                if press {
                    self.held_buttons.push(button);
                    self.fake(BUTTON_PRESS_EVENT, button, 0, 0)
                } else {
                    self.fake(BUTTON_RELEASE_EVENT, button, 0, 0)
                }
            }
            InputEvent::Key { keysym, press } if keymap::is_function_key(keysym) => {
                if press {
                    let keycode = match self.held_keys.get(&keysym) {
                        Some(&held) => held,
                        None => self.stroke(keysym)?.keycode,
                    };
                    self.held_keys.insert(keysym, keycode);
                    self.key(keycode, true)
                } else {
                    match self.held_keys.remove(&keysym) {
                        Some(keycode) => self.key(keycode, false),
                        None => Ok(()),
                    }
                }
            }
            InputEvent::Key { keysym, press } => {
                if press {
                    self.type_char(keysym)
                } else {
                    Ok(())
                }
            }
            InputEvent::ReleaseAll => self.release_all(),
        }
    }

    /// Lets go of every key and button held, and undoes every binding.
    pub fn release_all(&mut self) -> Result<(), InputError> {
        let mut first_error = None;
        let mut keep = |r: Result<(), InputError>| {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        };
        for (_, keycode) in std::mem::take(&mut self.held_keys) {
            keep(self.key(keycode, false));
        }
        for button in std::mem::take(&mut self.held_buttons) {
            keep(self.fake(BUTTON_RELEASE_EVENT, button, 0, 0));
        }
        for (keycode, _) in std::mem::take(&mut self.bound) {
            keep(
                self.conn
                    .change_keyboard_mapping(1, keycode, 2, &[0, 0])
                    .map(drop)
                    .map_err(display_error),
            );
        }
        keep(self.conn.flush().map_err(display_error));
        first_error.map_or(Ok(()), Err)
    }
}

impl Inject for X11Input {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError> {
        // A round trip, not a flush: the event has been processed when this
        // returns, so whatever is asked of the server next (where the pointer
        // is, on any connection) already sees it.
        let done = self.one(event).and_then(|()| {
            self.conn
                .get_input_focus()
                .map_err(display_error)?
                .reply()
                .map(drop)
                .map_err(display_error)
        });
        if done.is_err() {
            // Whatever failed, nothing stays held down.
            let _ = self.release_all();
        }
        done
    }
}

impl Drop for X11Input {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::warn!("letting go of the keys held on the end user's display: {e}");
        }
        // The releases must reach the server before the connection closes.
        let _ = self.conn.get_input_focus().map(|c| c.reply());
    }
}
