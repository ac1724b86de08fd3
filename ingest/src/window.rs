//! A read buffer with guaranteed look-ahead, byte offsets, and optional capture of the bytes
//! consumed: what splitting a file of concatenated gzip members into exact raw members needs.

use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

/// Buffered reader over a source.
pub(crate) struct Window<'p, R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[pos]`.
    offset: u64,
    /// Bytes read from `inner` so far, and the most ever read (for progress after a rewind).
    read_total: u64,
    high_water: u64,
    progress: Option<&'p AtomicU64>,
    capture: Option<Capture>,
}

struct Capture {
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl<'p, R: Read> Window<'p, R> {
    pub(crate) fn new(inner: R, capacity: usize, progress: Option<&'p AtomicU64>) -> Self {
        Self {
            inner,
            buf: vec![0; capacity.max(16)],
            pos: 0,
            end: 0,
            offset: 0,
            read_total: 0,
            high_water: 0,
            progress,
            capture: None,
        }
    }

    fn read_more(&mut self) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        self.read_total += n as u64;
        if self.read_total > self.high_water {
            if let Some(p) = self.progress {
                p.fetch_add(self.read_total - self.high_water, Ordering::Relaxed);
            }
            self.high_water = self.read_total;
        }
        Ok(n)
    }

    /// At least `n` buffered bytes, fewer only at the end of the stream.
    pub(crate) fn ensure(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            while self.end < n {
                if self.read_more()? == 0 {
                    break;
                }
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    /// Offset in the stream of the next byte to be consumed.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Starts recording consumed bytes, keeping at most `cap`.
    pub(crate) fn start_capture(&mut self, cap: usize) {
        self.capture = Some(Capture { data: Vec::new(), cap, truncated: false });
    }

    /// The bytes recorded so far.
    pub(crate) fn captured(&self) -> &[u8] {
        self.capture.as_ref().map_or(&[], |c| c.data.as_slice())
    }

    /// Stops recording; returns the bytes and whether some were dropped over the cap.
    pub(crate) fn take_capture(&mut self) -> (Vec<u8>, bool) {
        self.capture.take().map(|c| (c.data, c.truncated)).unwrap_or_default()
    }

    /// Consumes bytes up to the next plausible gzip member header (see [`member_start`]) or
    /// the end, returning whether one was found.
    pub(crate) fn skip_to_member(&mut self) -> io::Result<bool> {
        loop {
            let buf = self.ensure(GZIP_HEADER_LEN)?;
            if buf.len() < GZIP_HEADER_LEN {
                let n = buf.len();
                self.consume(n);
                return Ok(false);
            }
            match find_member_start(buf) {
                Some(i) => {
                    self.consume(i);
                    return Ok(true);
                }
                None => {
                    // Keep the last bytes: a header may straddle the buffer's end.
                    let n = buf.len() - (GZIP_HEADER_LEN - 1);
                    self.consume(n);
                }
            }
        }
    }
}

/// Length of a gzip member header without optional fields.
pub(crate) const GZIP_HEADER_LEN: usize = 10;

/// True if `b` starts with a plausible gzip member header: the magic, deflate, no reserved
/// flag bits, and a known operating-system byte. Random bytes pass about once in 2^30.
pub(crate) fn member_start(b: &[u8]) -> bool {
    b.len() >= GZIP_HEADER_LEN
        && b[..3] == [0x1f, 0x8b, 0x08]
        && b[3] & 0xe0 == 0
        && (b[9] <= 13 || b[9] == 255)
}

/// The first position in `buf` where a full plausible member header starts.
pub(crate) fn find_member_start(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&buf[from..], &[0x1f, 0x8b, 0x08]) {
        let at = from + i;
        if member_start(&buf[at..]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

impl<R: Read + Seek> Window<'_, R> {
    /// Continues reading at stream offset `pos` (a position already read), discarding the
    /// buffer.
    pub(crate) fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        self.inner.seek(SeekFrom::Start(pos))?;
        self.pos = 0;
        self.end = 0;
        self.offset = pos;
        self.read_total = pos;
        Ok(())
    }

    /// Back to the start of the stream, discarding the buffer.
    pub(crate) fn rewind(&mut self) -> io::Result<()> {
        self.inner.seek(SeekFrom::Start(0))?;
        self.pos = 0;
        self.end = 0;
        self.offset = 0;
        self.read_total = 0;
        Ok(())
    }
}

/// `Read::read` of a reader whose bytes are its `BufRead` buffer.
fn read_buffered(r: &mut impl BufRead, out: &mut [u8]) -> io::Result<usize> {
    let n = {
        let buf = r.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        n
    };
    r.consume(n);
    Ok(n)
}

impl<R: Read> Read for Window<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl<R: Read> BufRead for Window<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            self.read_more()?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        if let Some(c) = &mut self.capture {
            let room = c.cap.saturating_sub(c.data.len());
            let keep = n.min(room);
            c.data.extend_from_slice(&self.buf[self.pos..self.pos + keep]);
            c.truncated |= keep < n;
        }
        self.pos += n;
        self.offset += n as u64;
    }
}

/// The bytes a gzip decoder is handed at a time: see [`Window::chunked`].
pub(crate) const DECODE_CHUNK: usize = 4096;

/// A view of a window that hands its reader [`DECODE_CHUNK`] bytes at a time (fewer only at
/// the end), however large the window, and reads nothing beyond what the reader consumes.
pub(crate) struct Chunked<'w, 'p, R> {
    w: &'w mut Window<'p, R>,
}

impl<'p, R: Read> Window<'p, R> {
    /// A decoder reading through this view meets the same input pieces whatever the window's
    /// size: a read that finds corrupt data fails and drops what it inflated, so how much of
    /// a damaged member comes out must not depend on how the file is buffered.
    pub(crate) fn chunked(&mut self) -> Chunked<'_, 'p, R> {
        Chunked { w: self }
    }
}

impl<R: Read> Read for Chunked<'_, '_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl<R: Read> BufRead for Chunked<'_, '_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let buf = self.w.ensure(DECODE_CHUNK)?;
        Ok(&buf[..buf.len().min(DECODE_CHUNK)])
    }

    fn consume(&mut self, n: usize) {
        self.w.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3];

    #[test]
    fn skip_to_member_finds_a_header_across_buffer_boundaries() {
        for split in 0..40 {
            let mut data = vec![b'x'; split];
            data.extend_from_slice(&HEADER);
            data.extend_from_slice(b"rest");
            let mut w = Window::new(io::Cursor::new(data), 16, None);
            w.start_capture(100);
            assert!(w.skip_to_member().unwrap());
            assert_eq!(w.offset(), split as u64);
            assert_eq!(w.take_capture().0, vec![b'x'; split]);
            assert!(w.ensure(10).unwrap().starts_with(&HEADER));
        }
        let mut w = Window::new(io::Cursor::new(b"abcdef".to_vec()), 4, None);
        assert!(!w.skip_to_member().unwrap());
        assert_eq!(w.offset(), 6);
    }

    #[test]
    fn only_plausible_headers_count() {
        assert!(member_start(&HEADER));
        let mut reserved = HEADER;
        reserved[3] = 0xe0;
        assert!(!member_start(&reserved));
        let mut os = HEADER;
        os[9] = 77;
        assert!(!member_start(&os));
        assert!(!member_start(&HEADER[..9]));
        let buf = [&reserved[..], b"zz", &HEADER[..]].concat();
        assert_eq!(find_member_start(&buf), Some(12));
    }

    #[test]
    fn seek_back_rereads_without_counting_progress_twice() {
        let p = AtomicU64::new(0);
        let mut w = Window::new(io::Cursor::new((0u8..100).collect::<Vec<_>>()), 8, Some(&p));
        io::copy(&mut (&mut w).take(50), &mut io::sink()).unwrap();
        w.seek_to(20).unwrap();
        assert_eq!(w.offset(), 20);
        assert_eq!(w.fill_buf().unwrap()[0], 20);
        io::copy(&mut w, &mut io::sink()).unwrap();
        assert_eq!(p.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn capture_is_capped() {
        let mut w = Window::new(io::Cursor::new(b"0123456789".to_vec()), 4, None);
        w.start_capture(3);
        let mut s = String::new();
        w.read_to_string(&mut s).unwrap();
        assert_eq!(w.take_capture(), (b"012".to_vec(), true));
    }

    #[test]
    fn progress_counts_each_byte_once_across_a_rewind() {
        let p = AtomicU64::new(0);
        let mut w = Window::new(io::Cursor::new(vec![1u8; 100]), 8, Some(&p));
        io::copy(&mut w, &mut io::sink()).unwrap();
        w.rewind().unwrap();
        io::copy(&mut w, &mut io::sink()).unwrap();
        assert_eq!(p.load(Ordering::Relaxed), 100);
    }
}
