//! QR codes as base64 PNG images, the form the functions hand credentials
//! over in (`qr_code_base64`, `qr_code_2fa_base64`).
//!
//! The image is drawn module by module: 8 pixels per module, a quiet zone of
//! 4 modules (the minimum ISO/IEC 18004 asks for), black on white, 8-bit
//! grey PNG. No `data:` prefix: clients add it if they need one.

use crate::error::Error;
use base64::Engine as _;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module.
pub const MODULE_PIXELS: usize = 8;
/// Modules of white border on each side.
pub const QUIET_ZONE_MODULES: usize = 4;

/// Encodes `text` in a QR code and returns the PNG, base64-encoded.
pub fn png_base64(text: &str) -> Result<String, Error> {
    crate::log::profile::during("qr_png", || {
        Ok(base64::engine::general_purpose::STANDARD.encode(png(text)?))
    })
}

/// Encodes `text` in a QR code and returns the PNG bytes.
pub fn png(text: &str) -> Result<Vec<u8>, Error> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)
        .map_err(|e| Error::Internal(format!("QR encoding failed: {e}")))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE_MODULES) * MODULE_PIXELS;

    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let x0 = (index % modules + QUIET_ZONE_MODULES) * MODULE_PIXELS;
        let y0 = (index / modules + QUIET_ZONE_MODULES) * MODULE_PIXELS;
        for y in y0..y0 + MODULE_PIXELS {
            pixels[y * side + x0..y * side + x0 + MODULE_PIXELS].fill(0);
        }
    }

    let mut png = Vec::new();
    // Large runs of one value compress well even with the fast setting.
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Sub)
        .write_image(&pixels, side as u32, side as u32, ExtendedColorType::L8)
        .map_err(|e| Error::Internal(format!("PNG encoding failed: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (usize, String) {
        let image = image::load_from_memory(png_bytes).unwrap().to_luma8();
        let (w, h) = image.dimensions();
        let mut prepared =
            rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
                image.get_pixel(x as u32, y as u32).0[0]
            });
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, text) = grids[0].decode().unwrap();
        (w as usize, text)
    }

    #[test]
    fn the_png_decodes_to_the_text() {
        let text = "r7#Q)x]2mB~a;9Lk`Vd_0w!Z";
        let bytes = png(text).unwrap();
        let (_, decoded) = decode(&bytes);
        assert_eq!(decoded, text);
    }

    #[test]
    fn the_quiet_zone_is_at_least_four_modules() {
        let bytes = png("quiet").unwrap();
        let image = image::load_from_memory(&bytes).unwrap().to_luma8();
        let border = (QUIET_ZONE_MODULES * MODULE_PIXELS) as u32;
        let side = image.width();
        for (x, y, pixel) in image.enumerate_pixels() {
            let in_border = x < border || y < border || x >= side - border || y >= side - border;
            if in_border {
                assert_eq!(pixel.0[0], 255, "dark pixel at {x},{y} in the quiet zone");
            }
        }
        // The finder pattern starts right after the quiet zone.
        assert_eq!(image.get_pixel(border, border).0[0], 0);
    }

    #[test]
    fn base64_has_no_data_prefix() {
        let encoded = png_base64("x").unwrap();
        assert!(encoded.starts_with("iVBORw0KGgo"), "{encoded}");
    }
}
