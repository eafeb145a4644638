//! The video file being written, through ffmpeg-next: MP4 with H.264
//! (libx264, yuv420p, `faststart`, frames timed as the recording's, so
//! idle stretches cost nothing) or AVI with MJPEG (constant rate, as AVI
//! players expect; gaps are filled by the muxer's empty frames).

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{codec, encoder, format, frame, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use recorder::Frame;

/// The kind of file to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// H.264 in MP4.
    Mp4,
    /// MJPEG in AVI.
    Avi,
}

impl Container {
    /// The container for an output file name, by its extension.
    pub fn for_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "mp4" | "m4v" => Some(Self::Mp4),
            "avi" => Some(Self::Avi),
            _ => None,
        }
    }

    /// The file name extension it is written with.
    pub fn extension(self) -> &'static str {
        self.muxer()
    }

    fn muxer(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Avi => "avi",
        }
    }
}

/// Pictures per second of an AVI (constant rate); MP4 keeps the recording's own timing.
pub const AVI_FPS: i32 = 10;

/// An open output file.
pub struct Output {
    container: Container,
    octx: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    source: frame::Video,
    scaled: frame::Video,
    /// Encoder time base: 1 ms for MP4, one frame for AVI.
    time_base: Rational,
    stream_time_base: Rational,
    last_pts: Option<i64>,
    /// Once finishing: the last picture's pts and how long it lasts (encoder time base).
    last_lasts: Option<(i64, i64)>,
    /// The picture in `source` waits here until a later slot comes.
    pending: Option<i64>,
    pictures: u64,
}

impl Output {
    /// Creates `path` for `width`×`height` pictures, written at
    /// `out_width`×`out_height` (even), with `quality` (x264 CRF, or MJPEG q)
    /// and the file-level `tags` (e.g. `title`, `comment`).
    pub fn create(
        path: &Path,
        container: Container,
        (width, height): (u32, u32),
        (out_width, out_height): (u32, u32),
        quality: u32,
        tags: &[(&str, &str)],
    ) -> Result<Self, ffmpeg::Error> {
        ffmpeg::init()?;
        ffmpeg::log::set_level(ffmpeg::log::Level::Error);
        let mut octx = format::output_as(path, container.muxer())?;
        let mut metadata = Dictionary::new();
        for (key, value) in tags {
            metadata.set(key, value);
        }
        octx.set_metadata(metadata);
        let (codec_name, pixel, time_base) = match container {
            Container::Mp4 => ("libx264", Pixel::YUV420P, Rational(1, 1000)),
            Container::Avi => ("mjpeg", Pixel::YUVJ420P, Rational(1, AVI_FPS)),
        };
        let codec = encoder::find_by_name(codec_name).ok_or(ffmpeg::Error::EncoderNotFound)?;
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut ost = octx.add_stream(codec)?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()?;
        enc.set_width(out_width);
        enc.set_height(out_height);
        enc.set_format(pixel);
        enc.set_time_base(time_base);
        let mut options = Dictionary::new();
        let mut flags = codec::Flags::empty();
        if global_header {
            flags |= codec::Flags::GLOBAL_HEADER;
        }
        match container {
            Container::Mp4 => {
                options.set("preset", "veryfast");
                // Measured on a 1080p recording: x264's default (1.5 threads a
                // core, 10 frames of lookahead) peaks at 340 MB; two threads and
                // 3 frames at 270 MB, as fast on two cores (and, on screen
                // content, no larger).
                options.set("threads", "2");
                options.set("rc-lookahead", "3");
                options.set("crf", &quality.to_string());
                // A keyframe at least every 10 s, so players can seek.
                enc.set_gop(600);
            }
            Container::Avi => {
                enc.set_frame_rate(Some(Rational(AVI_FPS, 1)));
                flags |= codec::Flags::QSCALE;
                // FF_QP2LAMBDA: MJPEG's q on the lambda scale.
                enc.set_global_quality((quality * 118) as i32);
            }
        }
        enc.set_flags(flags);
        let encoder = enc.open_with(options)?;
        ost.set_parameters(&encoder);
        ost.set_time_base(time_base);
        let mut mux_options = Dictionary::new();
        if container == Container::Mp4 {
            // The index at the front: players start before the file is read.
            mux_options.set("movflags", "+faststart");
        }
        octx.write_header_with(mux_options)?;
        let stream_time_base = octx
            .stream(0)
            .ok_or(ffmpeg::Error::StreamNotFound)?
            .time_base();
        let scaler = scaling::Context::get(
            Pixel::BGRA,
            width,
            height,
            pixel,
            out_width,
            out_height,
            scaling::Flags::BICUBIC,
        )?;
        Ok(Self {
            container,
            octx,
            encoder,
            scaler,
            source: frame::Video::new(Pixel::BGRA, width, height),
            scaled: frame::Video::empty(),
            time_base,
            stream_time_base,
            last_pts: None,
            last_lasts: None,
            pending: None,
            pictures: 0,
        })
    }

    /// Adds `frame`, shown from `timestamp_us` on. Of two pictures that
    /// fall in the same time slot, the later is the one kept.
    pub fn push(&mut self, frame: &Frame, timestamp_us: u64) -> Result<(), ffmpeg::Error> {
        let pts = self.pts(timestamp_us);
        match self.pending {
            Some(waiting) if pts > waiting => self.encode(waiting)?,
            _ => {}
        }
        let stride = self.source.stride(0);
        let row = frame.width as usize * 4;
        let data = self.source.data_mut(0);
        for (y, src) in frame.pixels.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(src);
        }
        self.pending = Some(self.pending.map_or(pts, |waiting| waiting.max(pts)));
        Ok(())
    }

    /// Marks a chapter from `start_us` to `end_us`, for players' chapter
    /// menus. MP4 only: AVI has no chapters, and they are left out there.
    pub fn chapter(
        &mut self,
        start_us: u64,
        end_us: u64,
        title: &str,
    ) -> Result<(), ffmpeg::Error> {
        if self.container != Container::Mp4 {
            return Ok(());
        }
        let id = self.octx.nb_chapters() as i64;
        // The MP4 muxer writes chapters added after its header into the
        // trailer, as a chapter track and Nero `chpl` atom.
        let us = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        self.octx
            .add_chapter(id, Rational(1, 1_000_000), us(start_us), us(end_us), title)?;
        Ok(())
    }

    /// Ends the file at `end_us` (the last picture lasts until then) and
    /// writes its trailer; returns the pictures written.
    pub fn finish(mut self, end_us: u64) -> Result<u64, ffmpeg::Error> {
        if let Some(waiting) = self.pending.take() {
            self.encode(waiting)?;
        }
        // The last picture's packet says how long it lasts, so the file
        // lasts as long as the recording without a picture more (a repeated
        // last picture just before the end was dropped by players' edit
        // lists, so the count said one more than the file showed).
        let end = self.pts(end_us);
        match self.container {
            Container::Mp4 => {
                self.last_lasts = self
                    .last_pts
                    .filter(|last| end > *last)
                    .map(|last| (last, end - last));
            }
            // AVI has a fixed frame rate and no durations: the last picture
            // again in the last slot makes it last.
            Container::Avi if self.last_pts.is_some_and(|last| end > last + 1) => {
                self.scaled.set_pts(Some(end - 1));
                self.encoder.send_frame(&self.scaled)?;
                self.pictures += 1;
                self.drain()?;
            }
            Container::Avi => {}
        }
        self.encoder.send_eof()?;
        self.drain()?;
        self.octx.write_trailer()?;
        Ok(self.pictures)
    }

    /// Encodes the picture in `source` at `pts`.
    fn encode(&mut self, pts: i64) -> Result<(), ffmpeg::Error> {
        self.scaler.run(&self.source, &mut self.scaled)?;
        self.scaled.set_pts(Some(pts));
        self.encoder.send_frame(&self.scaled)?;
        self.last_pts = Some(pts);
        self.pictures += 1;
        self.drain()
    }

    fn pts(&self, timestamp_us: u64) -> i64 {
        let Rational(num, den) = self.time_base;
        (timestamp_us as i128 * i128::from(den) / (1_000_000 * i128::from(num))) as i64
    }

    fn drain(&mut self) -> Result<(), ffmpeg::Error> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            if let Some((last, lasts)) = self.last_lasts {
                if packet.pts() == Some(last) {
                    packet.set_duration(lasts);
                }
            }
            packet.set_stream(0);
            packet.rescale_ts(self.time_base, self.stream_time_base);
            packet.write_interleaved(&mut self.octx)?;
        }
        Ok(())
    }
}
