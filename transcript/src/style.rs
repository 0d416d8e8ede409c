//! Cell styles, reduced from avt's `Pen` to what the page draws.

/// A color as the program asked for it: one of the 16 themable ones, the 256-color palette, or truecolor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Color {
    Indexed(u8),
    Rgb(u8, u8, u8),
}

impl From<avt::Color> for Color {
    fn from(c: avt::Color) -> Self {
        match c {
            avt::Color::Indexed(n) => Color::Indexed(n),
            avt::Color::RGB(rgb) => Color::Rgb(rgb.r, rgb.g, rgb.b),
        }
    }
}

impl Color {
    /// CSS for palette colors 16..=255 and truecolor; the first 16 are CSS classes so that themes can set them.
    pub fn css(self) -> Option<String> {
        match self {
            Color::Indexed(n) if n < 16 => None,
            Color::Indexed(n) => {
                let (r, g, b) = palette_256(n);
                Some(format!("#{r:02x}{g:02x}{b:02x}"))
            }
            Color::Rgb(r, g, b) => Some(format!("#{r:02x}{g:02x}{b:02x}")),
        }
    }
}

/// xterm's 256-color palette above the 16 base colors: a 6x6x6 cube, then 24 grays.
fn palette_256(n: u8) -> (u8, u8, u8) {
    if n >= 232 {
        let v = 8 + 10 * (n - 232);
        return (v, v, v);
    }
    let level = |x: u8| if x == 0 { 0 } else { 55 + 40 * x };
    let i = n - 16;
    (level(i / 36), level((i / 6) % 6), level(i % 6))
}

/// How a run of cells looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Style {
    pub fg: Option<Color>,
    pub bg: Option<Color>,
    pub bold: bool,
    pub faint: bool,
    pub italic: bool,
    pub underline: bool,
    pub strikethrough: bool,
    pub blink: bool,
    pub inverse: bool,
}

impl From<&avt::Pen> for Style {
    fn from(pen: &avt::Pen) -> Self {
        Style {
            fg: pen.foreground().map(Color::from),
            bg: pen.background().map(Color::from),
            bold: pen.is_bold(),
            faint: pen.is_faint(),
            italic: pen.is_italic(),
            underline: pen.is_underline(),
            strikethrough: pen.is_strikethrough(),
            blink: pen.is_blink(),
            inverse: pen.is_inverse(),
        }
    }
}

impl Style {
    pub fn is_plain(&self) -> bool {
        *self == Style::default()
    }
}

/// Text of one style within a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub style: Style,
}
