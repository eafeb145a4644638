//! The end user's keyboard as the X server maps it: which key, at which
//! shift level, types a keysym; which keys hold each modifier; which
//! keycodes carry nothing and may be bound for the moment.
//!
//! The core protocol's table gives each keycode a row of keysyms. An XKB
//! server (every X server today) fills it as: column 0 level one, 1 level
//! two (Shift), 2 and 3 the same for the second group, 4 level three
//! (AltGr, `ISO_Level3_Shift`), 5 level four (AltGr+Shift). Only the first
//! group's columns are used: reaching another group means locking it, which
//! would change the end user's keyboard under them.

/// The Shift modifier's index (and bit) in the core modifier map.
pub const SHIFT: usize = 0;
/// The Lock (Caps Lock) modifier's index.
pub const LOCK: usize = 1;
/// `ISO_Level3_Shift`: the AltGr key of most layouts.
const ISO_LEVEL3_SHIFT: u32 = 0xfe03;

/// How to type a keysym: which key, and which modifiers the level needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stroke {
    /// The key.
    pub keycode: u8,
    /// Level two or four: Shift must be on (off for levels one and three).
    pub shift: bool,
    /// Level three or four: the level-three modifier (AltGr) must be on.
    pub level3: bool,
    /// Caps Lock picks level two on this key (its first two levels are a
    /// lower- and upper-case letter), so Lock inverts what Shift does.
    pub alphabetic: bool,
}

/// The keyboard mapping and modifier map of a display.
#[derive(Clone, Debug)]
pub struct Keymap {
    min_keycode: u8,
    per_keycode: usize,
    /// `per_keycode` keysyms for each keycode from `min_keycode` on (0: none).
    syms: Vec<u32>,
    /// The keycodes of each of the eight modifiers (Shift, Lock, Control, Mod1-5).
    modifiers: [Vec<u8>; 8],
}

/// Columns in the order they are tried, with the modifiers each needs.
const LEVELS: [(usize, bool, bool); 4] = [
    (0, false, false),
    (1, true, false),
    (4, false, true),
    (5, true, true),
];

impl Keymap {
    /// The mapping as `GetKeyboardMapping` (from `min_keycode`, `per_keycode`
    /// keysyms a keycode) and `GetModifierMapping` (`per_modifier`
    /// keycodes for each of the eight modifiers, 0 for none) give it.
    pub fn new(
        min_keycode: u8,
        per_keycode: u8,
        syms: Vec<u32>,
        per_modifier: u8,
        modifier_keycodes: &[u8],
    ) -> Self {
        let mut modifiers: [Vec<u8>; 8] = Default::default();
        let per_modifier = usize::from(per_modifier.max(1));
        for (held, row) in modifiers
            .iter_mut()
            .zip(modifier_keycodes.chunks(per_modifier))
        {
            held.extend(row.iter().copied().filter(|&k| k != 0));
        }
        Self {
            min_keycode,
            per_keycode: usize::from(per_keycode.max(1)),
            syms,
            modifiers,
        }
    }

    /// The keysyms of `keycode` (empty outside the table).
    pub fn row(&self, keycode: u8) -> &[u32] {
        let Some(i) = keycode.checked_sub(self.min_keycode) else {
            return &[];
        };
        let start = usize::from(i) * self.per_keycode;
        self.syms
            .get(start..start + self.per_keycode)
            .unwrap_or(&[])
    }

    fn keycodes(&self) -> impl Iterator<Item = u8> + '_ {
        let count = self.syms.len() / self.per_keycode;
        (0..count).filter_map(|i| u8::try_from(usize::from(self.min_keycode) + i).ok())
    }

    /// How to type `keysym` on this keyboard: the lowest level that carries
    /// it, on the first key found (`None`: no key does).
    pub fn stroke(&self, keysym: u32) -> Option<Stroke> {
        let level3 = self.level3().is_some();
        // A character matches however it is spelt (EuroSign 0x20ac or U+20AC).
        let wanted = character(keysym);
        LEVELS
            .iter()
            .filter(|&&(_, _, needs_level3)| level3 || !needs_level3)
            .find_map(|&(column, shift, level3)| {
                let keycode = self.keycodes().find(|&k| {
                    self.row(k).get(column).is_some_and(|&s| {
                        s == keysym || (wanted.is_some() && character(s) == wanted)
                    })
                })?;
                Some(Stroke {
                    keycode,
                    shift,
                    level3,
                    alphabetic: self.alphabetic(keycode),
                })
            })
    }

    /// Whether `keycode`'s first two levels are a letter in lower and upper case.
    fn alphabetic(&self, keycode: u8) -> bool {
        match self.row(keycode) {
            [lower, upper, ..] if lower != upper => match (character(*lower), character(*upper)) {
                (Some(l), Some(u)) => l.is_lowercase() && l.to_uppercase().eq([u]),
                _ => false,
            },
            _ => false,
        }
    }

    /// The keycodes that hold modifier `index` (0 Shift ... 7 Mod5).
    pub fn modifier_keys(&self, index: usize) -> &[u8] {
        self.modifiers.get(index).map_or(&[], Vec::as_slice)
    }

    /// The level-three modifier: its index, and the key that sets it
    /// (`ISO_Level3_Shift`), if the keyboard has one.
    pub fn level3(&self) -> Option<(usize, u8)> {
        self.modifiers.iter().enumerate().find_map(|(index, keys)| {
            keys.iter()
                .find(|&&k| self.row(k).first() == Some(&ISO_LEVEL3_SHIFT))
                .map(|&k| (index, k))
        })
    }

    /// The keycodes that carry no keysym at all: free to bind.
    pub fn spare(&self) -> Vec<u8> {
        self.keycodes()
            .filter(|&k| self.row(k).iter().all(|&s| s == 0))
            .collect()
    }

    /// Makes `keycode` type `keysym` at every level (as a binding does).
    pub fn bind(&mut self, keycode: u8, keysym: u32) {
        let Some(i) = keycode.checked_sub(self.min_keycode) else {
            return;
        };
        let start = usize::from(i) * self.per_keycode;
        if let Some(row) = self.syms.get_mut(start..start + self.per_keycode) {
            row.fill(0);
            row.iter_mut().take(2).for_each(|s| *s = keysym);
        }
    }
}

/// The character a keysym types, if it types one (legacy keysyms such
/// as `EuroSign` included; keypad and function keys excluded).
pub fn character(keysym: u32) -> Option<char> {
    if is_function_key(keysym) {
        return None;
    }
    xkeysym::Keysym::from(keysym).key_char()
}

/// The keysym that types `c`.
pub fn char_keysym(c: char) -> u32 {
    xkeysym::Keysym::from_char(c).raw()
}

/// Whether `keysym` is a key that is held (a modifier, an arrow, Return,
/// F1...), as opposed to one that types a character.
pub fn is_function_key(keysym: u32) -> bool {
    (0xfe00..=0xffff).contains(&keysym)
}

/// `keysym` for people: the character, or its number.
pub fn describe(keysym: u32) -> String {
    match character(keysym) {
        Some(c) => format!("{c:?} (keysym {keysym:#x})"),
        None => format!("keysym {keysym:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small German-like keyboard: keycode 10 `1 !`, 24 `q Q @`, 26 `e E €`,
    /// 34 `ü Ü`, 50 Shift_L, 66 Caps_Lock, 92 ISO_Level3_Shift, 93 nothing.
    fn german() -> Keymap {
        let (min, per) = (8u8, 7u8);
        let mut syms = vec![0u32; (100 - 8) * 7];
        let mut set = |k: usize, row: &[u32]| {
            syms[(k - 8) * 7..][..row.len()].copy_from_slice(row);
        };
        set(10, &[0x31, 0x21, 0x31, 0x21, 0xb9, 0xa1]);
        set(24, &[0x71, 0x51, 0x71, 0x51, 0x40, 0x7d9]);
        set(26, &[0x65, 0x45, 0x65, 0x45, 0x20ac, 0x20ac]);
        set(34, &[0xfc, 0xdc, 0xfc, 0xdc]);
        set(50, &[0xffe1]);
        set(66, &[0xffe5]);
        set(92, &[ISO_LEVEL3_SHIFT]);
        // Shift: 50; Lock: 66; Mod5: 92.
        let mut modmap = vec![0u8; 8 * 2];
        modmap[0] = 50;
        modmap[2] = 66;
        modmap[14] = 92;
        Keymap::new(min, per, syms, 2, &modmap)
    }

    #[test]
    fn each_keysym_is_typed_at_its_level() {
        let k = german();
        let s = |sym| k.stroke(sym).map(|s| (s.keycode, s.shift, s.level3));
        assert_eq!(s(0x71), Some((24, false, false)), "q");
        assert_eq!(s(0x51), Some((24, true, false)), "Q");
        assert_eq!(s(0x40), Some((24, false, true)), "@ is AltGr+q");
        assert_eq!(s(0x20ac), Some((26, false, true)), "€ is AltGr+e");
        assert_eq!(
            s(0x0100_20ac),
            Some((26, false, true)),
            "however it is spelt"
        );
        assert_eq!(s(0x21), Some((10, true, false)), "! is Shift+1");
        assert_eq!(s(0xdc), Some((34, true, false)), "Ü");
        assert_eq!(s(0xdf), None, "no key types ß here");
        assert!(k.stroke(0x71).unwrap().alphabetic);
        assert!(k.stroke(0xfc).unwrap().alphabetic, "ü is a letter too");
        assert!(!k.stroke(0x21).unwrap().alphabetic);
    }

    #[test]
    fn without_a_level_three_key_its_columns_are_not_used() {
        let mut k = german();
        k.modifiers[7].clear();
        assert_eq!(k.level3(), None);
        assert_eq!(k.stroke(0x40), None, "@ cannot be reached");
    }

    #[test]
    fn modifiers_spares_and_bindings() {
        let mut k = german();
        assert_eq!(k.modifier_keys(SHIFT), &[50]);
        assert_eq!(k.modifier_keys(LOCK), &[66]);
        assert_eq!(k.level3(), Some((7, 92)));
        let spare = k.spare();
        assert!(spare.contains(&93) && !spare.contains(&24), "{spare:?}");
        k.bind(93, 0xdf);
        let ss = k.stroke(0xdf).unwrap();
        assert_eq!((ss.keycode, ss.shift, ss.level3), (93, false, false));
        assert!(!k.spare().contains(&93));
        assert_eq!(k.row(7), &[] as &[u32], "below the table");
        assert_eq!(k.row(200), &[] as &[u32], "beyond the table");
    }

    #[test]
    fn keysyms_and_characters() {
        for c in ['a', '~', 'ü', 'ß', '€', 'Ω', '😀'] {
            assert_eq!(character(char_keysym(c)), Some(c));
        }
        assert_eq!(char_keysym('a'), 0x61);
        assert_eq!(char_keysym('€'), 0x20ac, "EuroSign");
        assert_eq!(character(0x0100_20ac), Some('€'), "as a Unicode keysym too");
        assert_eq!(character(0xff0d), None, "Return is no character");
        assert_eq!(character(0xffb1), None, "nor is the keypad's 1");
        assert!(is_function_key(0xff0d) && is_function_key(0xffe1));
        assert!(!is_function_key(0x61) && !is_function_key(0x20ac));
        assert_eq!(describe(0xfc), "'ü' (keysym 0xfc)");
    }
}
