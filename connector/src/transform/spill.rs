//! Where a transaction group's changes go beyond the memory budget: a temp
//! file of length-prefixed changes, written while the transaction is
//! decoded and read back once, in order, at its commit. The file is
//! unlinked as soon as it is created (`tempfile`), so it disappears on
//! every path: the transaction's end, a failed session, a killed process.
//! It lives in `$TMPDIR` (the operator mounts an emptyDir there).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// Why spilling failed (typically a full disk).
#[derive(Debug, thiserror::Error)]
#[error("spilling a whole-transaction group to {dir}: {source} (the transaction is bigger than the memory budget; give $TMPDIR room for it)")]
pub(crate) struct SpillError {
    /// The directory.
    pub dir: String,
    /// What the file system said.
    #[source]
    pub source: std::io::Error,
}

fn spill_error(source: std::io::Error) -> SpillError {
    SpillError {
        dir: std::env::temp_dir().display().to_string(),
        source,
    }
}

/// A spill file: appended to, then read from the start.
#[derive(Debug)]
pub(crate) enum SpillFile {
    /// Receiving changes.
    Writing(BufWriter<File>),
    /// Giving them back.
    Reading(BufReader<File>),
}

impl SpillFile {
    /// A new, already unlinked file in the temp directory.
    pub fn create() -> Result<Self, SpillError> {
        let file = tempfile::tempfile().map_err(spill_error)?;
        Ok(SpillFile::Writing(BufWriter::with_capacity(1 << 16, file)))
    }

    /// Appends one change.
    pub fn append(&mut self, change: &[u8]) -> Result<(), SpillError> {
        let SpillFile::Writing(w) = self else {
            return Err(spill_error(std::io::Error::other(
                "appending after reading began",
            )));
        };
        let len = u32::try_from(change.len())
            .map_err(|_| spill_error(std::io::Error::other("a change over 4 GiB")))?;
        w.write_all(&len.to_le_bytes()).map_err(spill_error)?;
        w.write_all(change).map_err(spill_error)
    }

    /// Switches to reading from the first change.
    pub fn rewind(&mut self) -> Result<(), SpillError> {
        if let SpillFile::Writing(w) = self {
            w.flush().map_err(spill_error)?;
            let mut file = w.get_ref().try_clone().map_err(spill_error)?;
            file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
            *self = SpillFile::Reading(BufReader::with_capacity(1 << 16, file));
        }
        Ok(())
    }

    /// Appends the next change to `out`.
    pub fn read_into(&mut self, out: &mut Vec<u8>) -> Result<(), SpillError> {
        let SpillFile::Reading(r) = self else {
            return Err(spill_error(std::io::Error::other("reading before rewind")));
        };
        let mut len = [0u8; 4];
        r.read_exact(&mut len).map_err(spill_error)?;
        let len = u32::from_le_bytes(len) as usize;
        let start = out.len();
        out.resize(start + len, 0);
        r.read_exact(&mut out[start..]).map_err(spill_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_back_in_order() {
        let mut file = SpillFile::create().expect("temp file");
        for c in [&b"{\"a\":1}"[..], b"", b"[2]"] {
            file.append(c).expect("append");
        }
        file.rewind().expect("rewind");
        let mut out = Vec::new();
        for _ in 0..3 {
            file.read_into(&mut out).expect("read");
            out.push(b'|');
        }
        assert_eq!(out, b"{\"a\":1}||[2]|");
        assert!(file.read_into(&mut out).is_err(), "nothing more");
        assert!(file.append(b"x").is_err(), "no appending once reading");
    }
}
