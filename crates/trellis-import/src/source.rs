//! Streaming row reader over CSV and XLSX files, with bounded memory.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use calamine::{DataRef, Reader, SheetType, Xlsx, XlsxError};
use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};
use serde::{Deserialize, Serialize};

/// How much of the file is looked at to detect encoding and delimiter.
const SAMPLE_BYTES: usize = 64 * 1024;
/// Lines of the sample used to sniff the delimiter.
const SNIFF_LINES: usize = 20;
/// Delimiter candidates, in tie-breaking order.
const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];
/// Rows the XLSX worker may run ahead of the caller.
const XLSX_QUEUE: usize = 256;
/// Excel's last column (XFD): a cell beyond it is a corrupt file, not a wide row.
const XLSX_MAX_COLUMNS: u32 = 16_384;
/// Longest XLSX cell kept: Excel's 32,767 characters, at up to 4 bytes each.
const MAX_CELL_BYTES: usize = 32_767 * 4;

/// File format of an import source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Delimited text.
    Csv,
    /// Office Open XML workbook.
    Xlsx,
}

impl Format {
    /// The fixed lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not `csv` or `xlsx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file format {0:?}: expected csv or xlsx")]
pub struct UnknownFormatName(
    /// The name given.
    pub String,
);

impl FromStr for Format {
    type Err = UnknownFormatName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" | "txt" | "tsv" => Ok(Self::Csv),
            "xlsx" => Ok(Self::Xlsx),
            _ => Err(UnknownFormatName(s.to_owned())),
        }
    }
}

/// Text encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// UTF-8, with or without a BOM.
    #[serde(rename = "utf-8")]
    Utf8,
    /// GB18030, which also reads GBK and GB2312 files.
    #[serde(rename = "gb18030")]
    Gb18030,
    /// UTF-16 little endian.
    #[serde(rename = "utf-16le")]
    Utf16Le,
    /// UTF-16 big endian.
    #[serde(rename = "utf-16be")]
    Utf16Be,
}

impl Encoding {
    /// The serde name (`utf-8`, `gb18030`, `utf-16le`, `utf-16be`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Gb18030 => "gb18030",
            Self::Utf16Le => "utf-16le",
            Self::Utf16Be => "utf-16be",
        }
    }

    /// The name shown to users (`UTF-8`, `GB18030`, ...).
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::Gb18030 => "GB18030",
            Self::Utf16Le => "UTF-16LE",
            Self::Utf16Be => "UTF-16BE",
        }
    }

    fn codec(self) -> &'static encoding_rs::Encoding {
        match self {
            Self::Utf8 => encoding_rs::UTF_8,
            Self::Gb18030 => encoding_rs::GB18030,
            Self::Utf16Le => encoding_rs::UTF_16LE,
            Self::Utf16Be => encoding_rs::UTF_16BE,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// An encoding name this reader does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported encoding {0:?}: expected utf-8, gb18030 (gbk), utf-16le or utf-16be")]
pub struct UnknownEncodingName(
    /// The name given.
    pub String,
);

impl FromStr for Encoding {
    type Err = UnknownEncodingName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "gb18030" | "gbk" | "gb2312" | "cp936" => Ok(Self::Gb18030),
            "utf-16le" | "utf16le" => Ok(Self::Utf16Le),
            "utf-16be" | "utf16be" => Ok(Self::Utf16Be),
            _ => Err(UnknownEncodingName(s.to_owned())),
        }
    }
}

/// How to read a file; `None` fields are detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// File format; `None` sniffs the ZIP signature.
    pub format: Option<Format>,
    /// CSV encoding; `None` detects it from a BOM or the first 64 KiB.
    pub encoding: Option<Encoding>,
    /// CSV delimiter; `None` sniffs among `,` `;` tab `|`.
    pub delimiter: Option<u8>,
    /// XLSX sheet name; `None` is the first sheet.
    pub sheet: Option<String>,
    /// Longest CSV record in bytes; a longer one stops the file.
    pub max_record_bytes: usize,
    /// Most header columns accepted.
    pub max_columns: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: None,
            encoding: None,
            delimiter: None,
            sheet: None,
            max_record_bytes: 1 << 20,
            max_columns: 1000,
        }
    }
}

/// What was found out about a file when it was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// The file format.
    pub format: Format,
    /// The CSV encoding (`None` for XLSX).
    pub encoding: Option<Encoding>,
    /// The CSV delimiter (`None` for XLSX).
    pub delimiter: Option<char>,
    /// The workbook's worksheet names (empty for CSV).
    pub sheets: Vec<String>,
    /// The sheet being read (`None` for CSV).
    pub sheet: Option<String>,
    /// The header row, cells trimmed.
    pub headers: Vec<String>,
}

/// One data row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Line (CSV) or sheet row (XLSX) number a user sees, 1-based.
    pub line: u64,
    /// The cells as found: not trimmed, not padded to the header.
    pub cells: Vec<String>,
    /// Some bytes were not valid in the encoding and became U+FFFD.
    pub malformed: bool,
}

/// Errors that stop reading a whole file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No header row.
    #[error("the file has no header row: it is empty or holds only blank lines")]
    Empty,
    /// Two header cells with one name.
    #[error("the header {name:?} appears more than once: column names must be unique")]
    DuplicateHeader {
        /// The repeated header.
        name: String,
    },
    /// Too wide a header.
    #[error("the header has {count} columns, more than the limit of {max}")]
    TooManyColumns {
        /// Columns in the header.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// NUL bytes: not a text file.
    #[error("the file is binary, not a CSV text file or an XLSX workbook")]
    Binary,
    /// Neither UTF-8 nor GB18030.
    #[error(
        "the file's encoding could not be detected: it is neither UTF-8 nor GB18030/GBK; choose the encoding"
    )]
    UnknownEncoding,
    /// A CSV record over `max_record_bytes`.
    #[error(
        "the record starting on line {line} is longer than the record size limit; is a quote left open?"
    )]
    RecordTooLarge {
        /// Line the record starts on.
        line: u64,
    },
    /// Not a readable XLSX workbook.
    #[error("not a valid XLSX workbook: {0}")]
    Xlsx(String),
    /// The requested sheet does not exist.
    #[error("no sheet named {name:?}; the workbook has: {}", sheets.join(", "))]
    UnknownSheet {
        /// The requested name.
        name: String,
        /// The workbook's sheets.
        sheets: Vec<String>,
    },
    /// Reading the file failed.
    #[error("reading the file failed: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// A stable name for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty_file",
            Self::DuplicateHeader { .. } => "duplicate_header",
            Self::TooManyColumns { .. } => "too_many_columns",
            Self::Binary => "binary_file",
            Self::UnknownEncoding => "unknown_encoding",
            Self::RecordTooLarge { .. } => "record_too_large",
            Self::Xlsx(_) => "bad_xlsx",
            Self::UnknownSheet { .. } => "unknown_sheet",
            Self::Io(_) => "io",
        }
    }

    /// The message in Chinese.
    pub fn message_zh(&self) -> String {
        match self {
            Self::Empty => "文件没有表头行：文件为空或只有空行".to_owned(),
            Self::DuplicateHeader { name } => format!("表头“{name}”出现了多次：列名必须唯一"),
            Self::TooManyColumns { count, max } => {
                format!("表头有 {count} 列，超过了 {max} 列的上限")
            }
            Self::Binary => "文件是二进制文件，不是 CSV 文本文件或 XLSX 工作簿".to_owned(),
            Self::UnknownEncoding => {
                "无法识别文件编码：既不是 UTF-8 也不是 GB18030/GBK，请手动选择编码".to_owned()
            }
            Self::RecordTooLarge { line } => {
                format!("从第 {line} 行开始的记录超过了单条记录的大小上限；是否有未闭合的引号？")
            }
            Self::Xlsx(detail) => format!("不是有效的 XLSX 工作簿：{detail}"),
            Self::UnknownSheet { name, sheets } => {
                format!(
                    "没有名为“{name}”的工作表；工作簿中有：{}",
                    sheets.join("、")
                )
            }
            Self::Io(e) => format!("读取文件失败：{e}"),
        }
    }
}

/// A row before blank-skipping.
struct RawRow {
    line: u64,
    cells: Vec<String>,
    malformed: bool,
}

/// An open file, read one row at a time.
pub struct Sheet {
    info: SourceInfo,
    inner: Inner,
    done: bool,
}

impl fmt::Debug for Sheet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sheet")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

enum Inner {
    Csv(Box<CsvSource>),
    Xlsx(XlsxSource),
}

impl Inner {
    fn next_raw(&mut self) -> Result<Option<RawRow>, ReadError> {
        match self {
            Self::Csv(c) => c.next_raw(),
            Self::Xlsx(x) => x.next_raw(),
        }
    }
}

impl Sheet {
    /// Open `path`, detect what `opts` leaves open, and read the header row.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Sheet, ReadError> {
        let mut file = File::open(path)?;
        let (sample, truncated) = read_sample(&mut file)?;
        let format = opts.format.unwrap_or(if sample.starts_with(b"PK\x03\x04") {
            Format::Xlsx
        } else {
            Format::Csv
        });
        let (mut inner, encoding, delimiter, sheets, sheet) = match format {
            Format::Csv => {
                file.seek(SeekFrom::Start(0))?;
                let (csv, encoding, delimiter) = CsvSource::open(file, &sample, truncated, opts)?;
                (
                    Inner::Csv(Box::new(csv)),
                    Some(encoding),
                    Some(char::from(delimiter)),
                    Vec::new(),
                    None,
                )
            }
            Format::Xlsx => {
                drop(sample);
                let (xlsx, sheets, sheet) =
                    XlsxSource::open(file, opts.sheet.clone(), opts.max_columns)?;
                (Inner::Xlsx(xlsx), None, None, sheets, Some(sheet))
            }
        };
        let header = loop {
            match inner.next_raw()? {
                None => return Err(ReadError::Empty),
                Some(r) if is_blank(&r.cells) => continue,
                Some(r) => break r,
            }
        };
        let headers = header_names(header.cells, opts.max_columns)?;
        Ok(Sheet {
            info: SourceInfo {
                format,
                encoding,
                delimiter,
                sheets,
                sheet,
                headers,
            },
            inner,
            done: false,
        })
    }

    /// What was detected, and the header row.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Next non-blank data row; Err only for what stops the whole file (I/O, a record over
    /// the size limit, a corrupt XLSX).
    pub fn next_row(&mut self) -> Result<Option<Row>, ReadError> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.inner.next_raw() {
                Ok(Some(r)) if is_blank(&r.cells) => continue,
                Ok(Some(r)) => {
                    return Ok(Some(Row {
                        line: r.line,
                        cells: r.cells,
                        malformed: r.malformed,
                    }));
                }
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    // The underlying readers are in an undefined state after an error.
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    /// Bytes of the file consumed so far (CSV) or rows read (XLSX), for progress.
    pub fn progress(&self) -> u64 {
        match &self.inner {
            Inner::Csv(c) => c.consumed.load(Ordering::Relaxed),
            Inner::Xlsx(x) => x.rows_read,
        }
    }
}

fn is_blank(cells: &[String]) -> bool {
    cells.iter().all(|c| c.trim().is_empty())
}

/// Trim the header cells and check their number and uniqueness.
fn header_names(cells: Vec<String>, max_columns: usize) -> Result<Vec<String>, ReadError> {
    if cells.len() > max_columns {
        return Err(ReadError::TooManyColumns {
            count: cells.len(),
            max: max_columns,
        });
    }
    let headers: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c = if i == 0 {
                c.trim_start_matches('\u{FEFF}')
            } else {
                c
            };
            c.trim().to_owned()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for h in headers.iter().filter(|h| !h.is_empty()) {
        if !seen.insert(h.as_str()) {
            return Err(ReadError::DuplicateHeader { name: h.clone() });
        }
    }
    Ok(headers)
}

/// Read up to `SAMPLE_BYTES`; `true` when the file is longer.
fn read_sample(file: &mut File) -> io::Result<(Vec<u8>, bool)> {
    let mut sample = Vec::with_capacity(SAMPLE_BYTES);
    file.by_ref()
        .take(SAMPLE_BYTES as u64 + 1)
        .read_to_end(&mut sample)?;
    let truncated = sample.len() > SAMPLE_BYTES;
    sample.truncate(SAMPLE_BYTES);
    Ok((sample, truncated))
}

/// Detect the encoding from a BOM or the sample's content.
fn detect_encoding(sample: &[u8], truncated: bool) -> Result<Encoding, ReadError> {
    if sample.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Ok(Encoding::Utf8);
    }
    if sample.starts_with(&[0xFF, 0xFE]) {
        return Ok(Encoding::Utf16Le);
    }
    if sample.starts_with(&[0xFE, 0xFF]) {
        return Ok(Encoding::Utf16Be);
    }
    if sample.contains(&0) {
        return Err(ReadError::Binary);
    }
    match std::str::from_utf8(sample) {
        Ok(_) => return Ok(Encoding::Utf8),
        // A character cut by the sample's end is not an error.
        Err(e) if truncated && e.error_len().is_none() => return Ok(Encoding::Utf8),
        Err(_) => {}
    }
    let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let capacity = decoder
        .max_utf8_buffer_length(sample.len())
        .unwrap_or(sample.len().saturating_mul(4));
    let mut text = String::with_capacity(capacity);
    // `last = false` on a cut sample keeps a split character pending instead of malformed.
    let _ = decoder.decode_to_string(sample, &mut text, !truncated);
    let (mut total, mut bad) = (0usize, 0usize);
    for c in text.chars() {
        total += 1;
        if c == '\u{FFFD}' {
            bad += 1;
        } else if c.is_control() && !matches!(c, '\t' | '\r' | '\n') {
            return Err(ReadError::UnknownEncoding);
        }
    }
    if bad * 100 > total {
        return Err(ReadError::UnknownEncoding);
    }
    Ok(Encoding::Gb18030)
}

/// Pick the delimiter that occurs most consistently across the first lines.
fn sniff_delimiter(text: &str, truncated: bool) -> u8 {
    let mut lines: Vec<[usize; DELIMITERS.len()]> = Vec::new();
    let mut counts = [0usize; DELIMITERS.len()];
    let mut in_quotes = false;
    let mut content = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                content = true;
            }
            '\n' | '\r' if !in_quotes => {
                if content {
                    lines.push(counts);
                    if lines.len() == SNIFF_LINES {
                        break;
                    }
                }
                counts = [0; DELIMITERS.len()];
                content = false;
            }
            _ => {
                if !in_quotes && let Some(i) = DELIMITERS.iter().position(|&d| char::from(d) == c) {
                    counts[i] += 1;
                }
                if !c.is_whitespace() {
                    content = true;
                }
            }
        }
    }
    // A last line cut short by the sample's end counts only when it is the only one.
    if content && lines.len() < SNIFF_LINES && (!truncated || lines.is_empty()) {
        lines.push(counts);
    }
    let mut best: Option<(usize, usize, usize)> = None; // (lines agreeing, count, index)
    for i in 0..DELIMITERS.len() {
        let per_line: Vec<usize> = lines.iter().map(|l| l[i]).collect();
        // The most frequent non-zero count, the larger on a tie.
        let mut mode = (0usize, 0usize); // (frequency, count)
        for &n in per_line.iter().filter(|&&n| n > 0) {
            let freq = per_line.iter().filter(|&&m| m == n).count();
            if (freq, n) > mode {
                mode = (freq, n);
            }
        }
        if mode.1 == 0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((freq, count, _)) => (mode.0, mode.1) > (freq, count),
        };
        if better {
            best = Some((mode.0, mode.1, i));
        }
    }
    best.map_or(b',', |(_, _, i)| DELIMITERS[i])
}

/// Marks the I/O error raised when a record passes the size limit.
#[derive(Debug)]
struct RecordLimit;

impl fmt::Display for RecordLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("record size limit exceeded")
    }
}

impl std::error::Error for RecordLimit {}

/// Counts the bytes read from the file, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Sits between the decoder and the CSV parser: bounds the bytes one record may take,
/// notes end of input, and turns old Mac CR line ends into LF.
struct Guard<R> {
    inner: R,
    limit: usize,
    used: usize,
    eof: bool,
    cr_to_lf: bool,
}

impl<R> Guard<R> {
    /// Called before each record.
    fn reset(&mut self) {
        self.used = 0;
        self.eof = false;
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let allowance = self.limit.saturating_sub(self.used);
        if allowance == 0 {
            return Err(io::Error::other(RecordLimit));
        }
        // Never hand out more than the allowance, so a long record fails before it is buffered.
        let want = buf.len().min(allowance);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.eof = true;
        }
        self.used += n;
        if self.cr_to_lf {
            for b in &mut buf[..n] {
                if *b == b'\r' {
                    *b = b'\n';
                }
            }
        }
        Ok(n)
    }
}

type Decoded = DecodeReaderBytes<BufReader<Counting<File>>, Vec<u8>>;

struct CsvSource {
    reader: csv::Reader<Guard<Decoded>>,
    record: csv::ByteRecord,
    consumed: Arc<AtomicU64>,
    /// UTF-8 is passed through raw and checked per cell; other encodings are transcoded.
    raw_utf8: bool,
    /// Line breaks inside quoted cells so far: a spreadsheet shows such a record as one
    /// row, so they do not count towards row numbers.
    embedded: u64,
}

impl CsvSource {
    fn open(
        file: File,
        sample: &[u8],
        truncated: bool,
        opts: &ReadOptions,
    ) -> Result<(Self, Encoding, u8), ReadError> {
        let encoding = match opts.encoding {
            Some(e) => e,
            None => detect_encoding(sample, truncated)?,
        };
        let (text, _, _) = encoding.codec().decode(sample);
        let delimiter = opts
            .delimiter
            .unwrap_or_else(|| sniff_delimiter(&text, truncated));
        let cr_only = text.contains('\r') && !text.contains('\n');
        drop(text);

        let consumed = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: file,
            count: Arc::clone(&consumed),
        };
        let raw_utf8 = encoding == Encoding::Utf8;
        let mut builder = DecodeReaderBytesBuilder::new();
        if raw_utf8 {
            // No decoder: bytes pass through (BOM stripped) and cells are checked one by one.
            builder.encoding(None).bom_sniffing(false).strip_bom(true);
        } else {
            builder.encoding(Some(encoding.codec())).strip_bom(true);
        }
        let decoded = builder.build(BufReader::new(counting));
        let guard = Guard {
            inner: decoded,
            limit: opts.max_record_bytes.max(1),
            used: 0,
            eof: false,
            cr_to_lf: cr_only,
        };
        // Terminator LF only (CR is stripped below) so every record's end consumes exactly
        // one counted newline, which makes start lines exact despite skipped blank lines.
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .quote(b'"')
            .double_quote(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(guard);
        Ok((
            CsvSource {
                reader,
                record: csv::ByteRecord::new(),
                consumed,
                raw_utf8,
                embedded: 0,
            },
            encoding,
            delimiter,
        ))
    }

    fn next_raw(&mut self) -> Result<Option<RawRow>, ReadError> {
        self.reader.get_mut().reset();
        let start_line = self.reader.position().line();
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => {
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(io) => {
                        if io.get_ref().is_some_and(|inner| inner.is::<RecordLimit>()) {
                            ReadError::RecordTooLarge {
                                line: start_line - self.embedded,
                            }
                        } else {
                            ReadError::Io(io)
                        }
                    }
                    other => ReadError::Io(io::Error::other(format!("{other:?}"))),
                });
            }
        }
        let end_line = self.reader.position().line();
        let terminated = !self.reader.get_ref().eof;
        let embedded: u64 = self
            .record
            .iter()
            .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum();
        // The row a spreadsheet shows: the start line, less earlier cells' line breaks.
        let line = end_line - embedded - u64::from(terminated) - self.embedded;
        self.embedded += embedded;

        let count = self.record.len();
        let mut malformed = false;
        let mut cells = Vec::with_capacity(count);
        for (i, field) in self.record.iter().enumerate() {
            // With an LF terminator a CRLF line leaves its CR on the last cell.
            let field = if i + 1 == count {
                field.strip_suffix(b"\r").unwrap_or(field)
            } else {
                field
            };
            let cell = match std::str::from_utf8(field) {
                Ok(s) => {
                    if !self.raw_utf8 && s.contains('\u{FFFD}') {
                        malformed = true;
                    }
                    s.to_owned()
                }
                Err(_) => {
                    malformed = true;
                    String::from_utf8_lossy(field).into_owned()
                }
            };
            cells.push(cell);
        }
        Ok(Some(RawRow {
            line,
            cells,
            malformed,
        }))
    }
}

/// Messages from the XLSX worker thread.
enum XlsxMsg {
    Opened { sheets: Vec<String>, sheet: String },
    Row(RawRow),
    Failed(ReadError),
    End,
}

/// Reads a sheet on a worker thread: calamine's streaming cell reader borrows the
/// workbook, which cannot live beside it in one struct without unsafe code.
struct XlsxSource {
    rx: Receiver<XlsxMsg>,
    rows_read: u64,
}

impl XlsxSource {
    fn open(
        file: File,
        wanted: Option<String>,
        max_columns: usize,
    ) -> Result<(Self, Vec<String>, String), ReadError> {
        let (tx, rx) = sync_channel(XLSX_QUEUE);
        thread::Builder::new()
            .name("trellis-import-xlsx".to_owned())
            .spawn(move || {
                if let Err(e) = xlsx_worker(file, wanted, max_columns, &tx) {
                    let _ = tx.send(XlsxMsg::Failed(e));
                }
            })?;
        match rx.recv() {
            Ok(XlsxMsg::Opened { sheets, sheet }) => Ok((Self { rx, rows_read: 0 }, sheets, sheet)),
            Ok(XlsxMsg::Failed(e)) => Err(e),
            Ok(_) | Err(_) => Err(ReadError::Xlsx("the workbook reader stopped".to_owned())),
        }
    }

    fn next_raw(&mut self) -> Result<Option<RawRow>, ReadError> {
        match self.rx.recv() {
            Ok(XlsxMsg::Row(r)) => {
                self.rows_read = r.line;
                Ok(Some(r))
            }
            Ok(XlsxMsg::End) => Ok(None),
            Ok(XlsxMsg::Failed(e)) => Err(e),
            Ok(XlsxMsg::Opened { .. }) | Err(_) => {
                Err(ReadError::Xlsx("the workbook reader stopped".to_owned()))
            }
        }
    }
}

fn xlsx_error(e: XlsxError) -> ReadError {
    match e {
        XlsxError::Io(io) => ReadError::Io(io),
        other => ReadError::Xlsx(other.to_string()),
    }
}

/// Stream the sheet's cells, grouped into rows, to `tx`; stops when the receiver is gone.
fn xlsx_worker(
    file: File,
    wanted: Option<String>,
    max_columns: usize,
    tx: &SyncSender<XlsxMsg>,
) -> Result<(), ReadError> {
    let mut workbook: Xlsx<BufReader<File>> =
        Xlsx::new(BufReader::new(file)).map_err(xlsx_error)?;
    let sheets: Vec<String> = workbook
        .sheets_metadata()
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet)
        .map(|s| s.name.clone())
        .collect();
    let sheet = match wanted {
        Some(name) if sheets.contains(&name) => name,
        Some(name) => return Err(ReadError::UnknownSheet { name, sheets }),
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| ReadError::Xlsx("the workbook has no worksheet".to_owned()))?,
    };
    if tx
        .send(XlsxMsg::Opened {
            sheets,
            sheet: sheet.clone(),
        })
        .is_err()
    {
        return Ok(());
    }
    let mut cells = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(xlsx_error)?;
    let mut current: Option<u32> = None;
    let mut row: Vec<String> = Vec::new();
    while let Some(cell) = cells.next_cell().map_err(xlsx_error)? {
        let (r, c) = cell.get_position();
        if c >= XLSX_MAX_COLUMNS {
            return Err(ReadError::Xlsx(format!(
                "row {} has a cell beyond Excel's last column XFD",
                u64::from(r) + 1
            )));
        }
        if current != Some(r) {
            if let Some(prev) = current
                && !send_row(tx, prev, std::mem::take(&mut row))
            {
                return Ok(());
            }
            current = Some(r);
        }
        let value = cell.get_value();
        if matches!(value, DataRef::Empty) {
            // A styled but empty cell does not extend the row.
            continue;
        }
        let c = c as usize;
        if c > max_columns {
            // Past the columns a header may have (one more, so a wide header is refused).
            continue;
        }
        if row.len() <= c {
            row.resize(c + 1, String::new());
        }
        let mut text = cell_text(value);
        if text.len() > MAX_CELL_BYTES {
            // More than a spreadsheet cell holds (32,767 characters): cut at a character.
            let mut end = MAX_CELL_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        row[c] = text;
    }
    if let Some(prev) = current
        && !send_row(tx, prev, row)
    {
        return Ok(());
    }
    let _ = tx.send(XlsxMsg::End);
    Ok(())
}

/// Send one row; `false` when the reader is gone.
fn send_row(tx: &SyncSender<XlsxMsg>, row_index: u32, cells: Vec<String>) -> bool {
    if cells.is_empty() {
        return true;
    }
    tx.send(XlsxMsg::Row(RawRow {
        line: u64::from(row_index) + 1,
        cells,
        malformed: false,
    }))
    .is_ok()
}

/// The text of one XLSX cell.
fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Empty => String::new(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => float_text(*f),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(dt) => {
            if dt.is_duration() {
                duration_text(dt.as_f64())
            } else {
                let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
                let time = if ms > 0 {
                    format!("{h:02}:{mi:02}:{s:02}.{ms:03}")
                } else {
                    format!("{h:02}:{mi:02}:{s:02}")
                };
                let serial = dt.as_f64();
                if (0.0..1.0).contains(&serial) && serial > 0.0 {
                    // A time-of-day cell has no date.
                    time
                } else if (h, mi, s, ms) == (0, 0, 0, 0) {
                    format!("{y:04}-{mo:02}-{d:02}")
                } else {
                    format!("{y:04}-{mo:02}-{d:02}T{time}")
                }
            }
        }
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => e.to_string(),
    }
}

/// Whole floats as integers ("120"), others in Rust's shortest form ("1.5").
fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A duration in days as `[h]:mm:ss`.
fn duration_text(days: f64) -> String {
    let total = (days * 86_400.0).round();
    let sign = if total < 0.0 { "-" } else { "" };
    let total = total.abs() as u64;
    format!(
        "{sign}{}:{:02}:{:02}",
        total / 3600,
        total / 60 % 60,
        total % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicUsize;

    /// A file in the temp dir, removed on drop.
    struct Temp(PathBuf);

    impl Temp {
        fn new(ext: &str, bytes: &[u8]) -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "trellis-import-test-{}-{n}.{ext}",
                std::process::id()
            ));
            std::fs::write(&path, bytes).unwrap();
            Self(path)
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn open(bytes: &[u8], opts: &ReadOptions) -> Result<Sheet, ReadError> {
        let file = Temp::new("csv", bytes);
        // Opening keeps the file handle, so the file may go away after.
        Sheet::open(&file.0, opts)
    }

    fn rows(sheet: &mut Sheet) -> Vec<Row> {
        let mut out = Vec::new();
        while let Some(r) = sheet.next_row().unwrap() {
            out.push(r);
        }
        out
    }

    /// (line, cells) of every row.
    fn read_all(bytes: &[u8]) -> (SourceInfo, Vec<(u64, Vec<String>)>) {
        let mut sheet = open(bytes, &ReadOptions::default()).unwrap();
        let rows = rows(&mut sheet)
            .into_iter()
            .map(|r| {
                assert!(!r.malformed, "row {} marked malformed", r.line);
                (r.line, r.cells)
            })
            .collect();
        (sheet.info().clone(), rows)
    }

    fn cells(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn utf8_without_bom() {
        let (info, rows) = read_all(b"name,age\nAlice,30\nBob,40\n");
        assert_eq!(info.format, Format::Csv);
        assert_eq!(info.encoding, Some(Encoding::Utf8));
        assert_eq!(info.delimiter, Some(','));
        assert_eq!(info.headers, cells(&["name", "age"]));
        assert!(info.sheets.is_empty() && info.sheet.is_none());
        assert_eq!(
            rows,
            vec![(2, cells(&["Alice", "30"])), (3, cells(&["Bob", "40"]))]
        );
    }

    #[test]
    fn utf8_with_bom_and_crlf() {
        let (info, rows) = read_all("\u{FEFF} 名称 ,数量\r\n苹果, 3 \r\n香蕉,4".as_bytes());
        assert_eq!(info.encoding, Some(Encoding::Utf8));
        // Header trimmed and BOM gone; data cells untouched.
        assert_eq!(info.headers, cells(&["名称", "数量"]));
        assert_eq!(
            rows,
            vec![(2, cells(&["苹果", " 3 "])), (3, cells(&["香蕉", "4"]))]
        );
    }

    #[test]
    fn gbk_is_detected() {
        let (bytes, _, _) =
            encoding_rs::GBK.encode("客户名称,电话\n华为技术有限公司,123\n腾讯,456\n");
        let (info, rows) = read_all(&bytes);
        assert_eq!(info.encoding, Some(Encoding::Gb18030));
        assert_eq!(info.headers, cells(&["客户名称", "电话"]));
        assert_eq!(
            rows,
            vec![
                (2, cells(&["华为技术有限公司", "123"])),
                (3, cells(&["腾讯", "456"]))
            ]
        );
    }

    #[test]
    fn utf16le_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "名称\t数量\n苹果\t3\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let (info, rows) = read_all(&bytes);
        assert_eq!(info.encoding, Some(Encoding::Utf16Le));
        assert_eq!(info.delimiter, Some('\t'));
        assert_eq!(info.headers, cells(&["名称", "数量"]));
        assert_eq!(rows, vec![(2, cells(&["苹果", "3"]))]);
    }

    #[test]
    fn utf16be_with_bom() {
        let mut bytes = vec![0xFE, 0xFF];
        for unit in "a,b\n1,2\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_be_bytes());
        }
        let (info, rows) = read_all(&bytes);
        assert_eq!(info.encoding, Some(Encoding::Utf16Be));
        assert_eq!(rows, vec![(2, cells(&["1", "2"]))]);
    }

    #[test]
    fn delimiters_sniffed() {
        let (info, rows) = read_all(b"name;price;note\nfoo;1,5;x\nbar;2,75;\"a;b\"\n");
        assert_eq!(info.delimiter, Some(';'));
        assert_eq!(rows[1].1, cells(&["bar", "2,75", "a;b"]));

        let (info, rows) = read_all(b"a\tb\tc\n1\t2,5\t3\n");
        assert_eq!(info.delimiter, Some('\t'));
        assert_eq!(rows[0].1, cells(&["1", "2,5", "3"]));

        let (info, _) = read_all(b"a|b|c\n1|2|3\n");
        assert_eq!(info.delimiter, Some('|'));

        // No candidate at all: a single column read with ','.
        let (info, rows) = read_all(b"name\nfoo\n");
        assert_eq!(info.delimiter, Some(','));
        assert_eq!(rows, vec![(2, cells(&["foo"]))]);
    }

    #[test]
    fn sniffer_prefers_consistent_then_larger_then_order() {
        assert_eq!(sniff_delimiter("a,b;c\n1,2;3\n", false), b',');
        assert_eq!(sniff_delimiter("a;b;c,d\n", false), b';');
        assert_eq!(sniff_delimiter("a;b\n1,5;2\n3,5;4\n", false), b';');
        assert_eq!(sniff_delimiter("\"x,y\";b\n\"1,2\";3\n", false), b';');
        assert_eq!(sniff_delimiter("a|b\n1|2\n", false), b'|');
        assert_eq!(sniff_delimiter("", false), b',');
        // A last line cut by the sample's end is ignored.
        assert_eq!(sniff_delimiter("a;b\n1;2\n3,4,5,6,7,8,9", true), b';');
    }

    #[test]
    fn explicit_delimiter_wins() {
        let opts = ReadOptions {
            delimiter: Some(b'|'),
            ..ReadOptions::default()
        };
        let mut sheet = open(b"a,b|c\n1,2|3\n", &opts).unwrap();
        assert_eq!(sheet.info().headers, cells(&["a,b", "c"]));
        assert_eq!(rows(&mut sheet)[0].cells, cells(&["1,2", "3"]));
    }

    #[test]
    fn quoted_cells_keep_delimiters_and_newlines_and_rows_count_as_a_spreadsheet_shows_them() {
        let (_, rows) = read_all(
            b"id,note\n1,\"hello, world\"\n2,\"line1\nline2\nline3\"\n3,after\n4,\"say \"\"hi\"\"\"\n",
        );
        assert_eq!(
            rows,
            vec![
                (2, cells(&["1", "hello, world"])),
                (3, cells(&["2", "line1\nline2\nline3"])),
                (4, cells(&["3", "after"])),
                (5, cells(&["4", "say \"hi\""])),
            ]
        );
        let (_, rows) = read_all(b"id,note\r\n1,\"a\r\nb\"\r\n\r\n2,\"c\"\r\n3,x");
        assert_eq!(
            rows,
            vec![
                (2, cells(&["1", "a\r\nb"])),
                (4, cells(&["2", "c"])),
                (5, cells(&["3", "x"])),
            ]
        );
    }

    #[test]
    fn blank_lines_skipped_with_right_line_numbers() {
        let (info, rows) = read_all(b"\n\n  \nname,x\n\n1,2\n , \n,,\n3,4");
        assert_eq!(info.headers, cells(&["name", "x"]));
        assert_eq!(rows, vec![(6, cells(&["1", "2"])), (9, cells(&["3", "4"]))]);
        let (_, rows) = read_all(b"\r\nname,x\r\n\r\n1,2\r\n");
        assert_eq!(rows, vec![(4, cells(&["1", "2"]))]);
    }

    #[test]
    fn old_mac_line_ends() {
        let (info, rows) = read_all(b"a,b\r1,2\r\r3,4");
        assert_eq!(info.headers, cells(&["a", "b"]));
        assert_eq!(rows, vec![(2, cells(&["1", "2"])), (4, cells(&["3", "4"]))]);
    }

    #[test]
    fn ragged_rows_as_found() {
        let (_, rows) = read_all(b"a,b,c\n1,2\n1,2,3,4\n,,x\n");
        assert_eq!(
            rows,
            vec![
                (2, cells(&["1", "2"])),
                (3, cells(&["1", "2", "3", "4"])),
                (4, cells(&["", "", "x"])),
            ]
        );
    }

    #[test]
    fn duplicate_headers() {
        let err = open(b"a,b, a \n1,2,3\n", &ReadOptions::default()).unwrap_err();
        assert_eq!(err.code(), "duplicate_header");
        assert!(matches!(&err, ReadError::DuplicateHeader { name } if name == "a"));
        assert!(err.to_string().contains("\"a\""));
        assert!(err.message_zh().contains("“a”"));
        // Empty header cells may repeat.
        let (info, _) = read_all(b"a,,b,\n1,2,3,4\n");
        assert_eq!(info.headers, cells(&["a", "", "b", ""]));
    }

    #[test]
    fn empty_files() {
        for bytes in [&b""[..], b"\n\n   \n", b" , ,\r\n\r\n", b"\xEF\xBB\xBF"] {
            let err = open(bytes, &ReadOptions::default()).unwrap_err();
            assert_eq!(err.code(), "empty_file", "{bytes:?}");
        }
    }

    #[test]
    fn header_only_is_not_an_error() {
        let (info, rows) = read_all(b"a,b\n");
        assert_eq!(info.headers, cells(&["a", "b"]));
        assert!(rows.is_empty());
        let (_, rows) = read_all(b"a,b");
        assert!(rows.is_empty());
    }

    #[test]
    fn too_many_columns() {
        let opts = ReadOptions {
            max_columns: 3,
            ..ReadOptions::default()
        };
        let err = open(b"a,b,c,d\n", &opts).unwrap_err();
        assert_eq!(err.code(), "too_many_columns");
        assert!(open(b"a,b,c\n1,2,3,4,5\n", &opts).is_ok());
    }

    fn junk(len: usize, seed: u64) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        bytes
    }

    #[test]
    fn binary_junk_refused() {
        let mut bytes = junk(200_000, 1);
        bytes[10] = 0;
        bytes[..4].copy_from_slice(b"abc,");
        let err = open(&bytes, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.code(), "binary_file");
        assert!(!err.message_zh().is_empty());
    }

    #[test]
    fn unknown_encoding_refused() {
        let mut bytes = b"a,b\n".to_vec();
        bytes.extend(std::iter::repeat_n(0xFFu8, 200));
        let err = open(&bytes, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.code(), "unknown_encoding");
        // Decodes as GB18030 but holds a control character.
        let (mut bytes, _, _) = encoding_rs::GBK.encode("名称,数量\n苹果,3\n");
        let mut bytes = bytes.to_mut().clone();
        bytes.push(0x01);
        let err = open(&bytes, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.code(), "unknown_encoding");
    }

    #[test]
    fn utf8_cut_at_sample_end_is_still_utf8() {
        let mut text = "h\n".to_owned();
        text.push_str(&"a".repeat(SAMPLE_BYTES - 3));
        text.push_str("中文\n");
        let bytes = text.as_bytes();
        assert!(std::str::from_utf8(&bytes[..SAMPLE_BYTES]).is_err());
        assert_eq!(
            detect_encoding(&bytes[..SAMPLE_BYTES], true).unwrap(),
            Encoding::Utf8
        );
        let (info, rows) = read_all(bytes);
        assert_eq!(info.encoding, Some(Encoding::Utf8));
        assert!(rows[0].1[0].ends_with("中文"));
    }

    #[test]
    fn record_over_limit_stops_without_reading_the_rest() {
        let mut bytes = b"a,b\n1,2\n\"".to_vec();
        // An unclosed quote swallows the rest of a big file.
        bytes.extend(std::iter::repeat_n(b'x', 8 << 20));
        let file = Temp::new("csv", &bytes);
        let opts = ReadOptions {
            max_record_bytes: 64 * 1024,
            ..ReadOptions::default()
        };
        let mut sheet = Sheet::open(&file.0, &opts).unwrap();
        assert_eq!(sheet.next_row().unwrap().unwrap().line, 2);
        let err = sheet.next_row().unwrap_err();
        assert!(
            matches!(err, ReadError::RecordTooLarge { line: 3 }),
            "{err:?}"
        );
        assert_eq!(err.code(), "record_too_large");
        assert!(err.to_string().contains("line 3"));
        assert!(
            sheet.progress() < 1 << 20,
            "read {} bytes",
            sheet.progress()
        );
        // The file is finished after the error.
        assert!(sheet.next_row().unwrap().is_none());
    }

    #[test]
    fn many_small_records_under_a_small_limit() {
        let mut text = "id,name\n".to_owned();
        for i in 0..20_000 {
            text.push_str(&format!("{i},name {i}\n"));
        }
        let opts = ReadOptions {
            max_record_bytes: 100,
            ..ReadOptions::default()
        };
        let mut sheet = open(text.as_bytes(), &opts).unwrap();
        let rows = rows(&mut sheet);
        assert_eq!(rows.len(), 20_000);
        assert_eq!(rows[19_999].line, 20_001);
        assert_eq!(rows[19_999].cells, cells(&["19999", "name 19999"]));
        assert_eq!(sheet.progress(), text.len() as u64);
    }

    #[test]
    fn gbk_declared_utf8_is_malformed() {
        let (gbk, _, _) = encoding_rs::GBK.encode("华为,深圳\n");
        let mut bytes = b"name,city\nplain,ascii\n".to_vec();
        bytes.extend_from_slice(&gbk);
        let opts = ReadOptions {
            encoding: Some(Encoding::Utf8),
            ..ReadOptions::default()
        };
        let mut sheet = open(&bytes, &opts).unwrap();
        let rows = rows(&mut sheet);
        assert_eq!(rows.len(), 2);
        assert!(!rows[0].malformed);
        assert!(rows[1].malformed);
        assert_eq!(rows[1].line, 3);
        assert!(rows[1].cells[0].contains('\u{FFFD}'));
        // Detection would have got it right.
        let mut sheet = open(&bytes, &ReadOptions::default()).unwrap();
        assert_eq!(sheet.info().encoding, Some(Encoding::Gb18030));
        assert!(!rows_of(&mut sheet).iter().any(|r| r.malformed));
    }

    fn rows_of(sheet: &mut Sheet) -> Vec<Row> {
        rows(sheet)
    }

    #[test]
    fn junk_in_a_declared_encoding_never_panics() {
        for (seed, encoding) in [
            (2, Encoding::Utf8),
            (3, Encoding::Gb18030),
            (4, Encoding::Utf16Le),
            (5, Encoding::Utf16Be),
        ] {
            let mut bytes = b"a,b\n".to_vec();
            bytes.extend(junk(300_000, seed));
            let opts = ReadOptions {
                encoding: Some(encoding),
                format: Some(Format::Csv),
                ..ReadOptions::default()
            };
            let Ok(mut sheet) = open(&bytes, &opts) else {
                continue;
            };
            let mut malformed = 0;
            loop {
                match sheet.next_row() {
                    Ok(Some(r)) => malformed += usize::from(r.malformed),
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(e.code(), "record_too_large");
                        break;
                    }
                }
            }
            assert!(malformed > 0, "{encoding}");
        }
    }

    #[test]
    fn encoding_names() {
        for (s, e) in [
            ("utf-8", Encoding::Utf8),
            ("UTF8", Encoding::Utf8),
            ("gbk", Encoding::Gb18030),
            ("GB2312", Encoding::Gb18030),
            ("gb18030", Encoding::Gb18030),
            ("utf-16le", Encoding::Utf16Le),
            ("UTF-16BE", Encoding::Utf16Be),
        ] {
            assert_eq!(s.parse::<Encoding>().unwrap(), e, "{s}");
        }
        assert!("latin1".parse::<Encoding>().is_err());
        assert_eq!(
            serde_json::to_string(&Encoding::Utf16Le).unwrap(),
            "\"utf-16le\""
        );
        assert_eq!(
            serde_json::from_str::<Encoding>("\"gb18030\"").unwrap(),
            Encoding::Gb18030
        );
        assert_eq!(serde_json::to_string(&Format::Xlsx).unwrap(), "\"xlsx\"");
        assert_eq!("XLSX".parse::<Format>().unwrap(), Format::Xlsx);
    }

    #[test]
    fn sheet_is_send() {
        fn send<T: Send>() {}
        send::<Sheet>();
        send::<ReadError>();
    }

    #[test]
    fn missing_file_is_io() {
        let err = Sheet::open(
            Path::new("/nonexistent/trellis.csv"),
            &ReadOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "io");
    }

    fn workbook() -> Temp {
        use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};
        let mut wb = Workbook::new();
        let date = XFormat::new().set_num_format("yyyy-mm-dd");
        let stamp = XFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss");
        let time = XFormat::new().set_num_format("hh:mm:ss");
        let ws = wb.add_worksheet();
        ws.set_name("客户").unwrap();
        for (c, h) in [" 名称 ", "数量", "价格", "日期", "时间", "有效", "钟点"]
            .iter()
            .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        ws.write_string(1, 0, "华为").unwrap();
        ws.write_number(1, 1, 120.0).unwrap();
        ws.write_number(1, 2, 1.5).unwrap();
        ws.write_datetime_with_format(1, 3, ExcelDateTime::from_ymd(2024, 3, 5).unwrap(), &date)
            .unwrap();
        let dt = ExcelDateTime::from_ymd(2024, 3, 5)
            .unwrap()
            .and_hms(14, 30, 15)
            .unwrap();
        ws.write_datetime_with_format(1, 4, dt, &stamp).unwrap();
        ws.write_boolean(1, 5, true).unwrap();
        ws.write_datetime_with_format(1, 6, ExcelDateTime::from_hms(9, 5, 0).unwrap(), &time)
            .unwrap();
        // Row 3 left blank; row 4 sparse; row 5 has a styled blank at its end.
        ws.write_string(3, 0, "腾讯").unwrap();
        ws.write_number(3, 3, -2.25).unwrap();
        ws.write_string(4, 1, " 7 ").unwrap();
        ws.write_boolean(4, 5, false).unwrap();
        ws.write_blank(4, 6, &date).unwrap();
        let orders = wb.add_worksheet();
        orders.set_name("Orders").unwrap();
        orders.write_string(0, 0, "order_no").unwrap();
        orders.write_string(0, 1, "amount").unwrap();
        orders.write_string(1, 0, "A-1").unwrap();
        orders.write_number(1, 1, 99.9).unwrap();
        orders.write_number(2, 0, 12_345_678_901.0).unwrap();
        let file = Temp::new("xlsx", b"");
        wb.save(&file.0).unwrap();
        file
    }

    #[test]
    fn xlsx_first_sheet_with_types_and_sparse_rows() {
        let file = workbook();
        let mut sheet = Sheet::open(&file.0, &ReadOptions::default()).unwrap();
        let info = sheet.info().clone();
        assert_eq!(info.format, Format::Xlsx);
        assert_eq!(info.encoding, None);
        assert_eq!(info.delimiter, None);
        assert_eq!(info.sheets, cells(&["客户", "Orders"]));
        assert_eq!(info.sheet.as_deref(), Some("客户"));
        assert_eq!(
            info.headers,
            cells(&["名称", "数量", "价格", "日期", "时间", "有效", "钟点"])
        );
        let rows = rows(&mut sheet);
        let got: Vec<(u64, Vec<String>)> = rows.iter().map(|r| (r.line, r.cells.clone())).collect();
        assert_eq!(
            got,
            vec![
                (
                    2,
                    cells(&[
                        "华为",
                        "120",
                        "1.5",
                        "2024-03-05",
                        "2024-03-05T14:30:15",
                        "true",
                        "09:05:00"
                    ])
                ),
                (4, cells(&["腾讯", "", "", "-2.25"])),
                (5, cells(&["", " 7 ", "", "", "", "false"])),
            ]
        );
        assert!(rows.iter().all(|r| !r.malformed));
        assert_eq!(sheet.progress(), 5);
    }

    #[test]
    fn xlsx_sheet_by_name_and_unknown_sheet() {
        let file = workbook();
        let opts = ReadOptions {
            sheet: Some("Orders".to_owned()),
            ..ReadOptions::default()
        };
        let mut sheet = Sheet::open(&file.0, &opts).unwrap();
        assert_eq!(sheet.info().sheet.as_deref(), Some("Orders"));
        assert_eq!(sheet.info().headers, cells(&["order_no", "amount"]));
        let rows = rows(&mut sheet);
        assert_eq!(rows[0].cells, cells(&["A-1", "99.9"]));
        assert_eq!(rows[1].cells, cells(&["12345678901"]));
        assert_eq!(rows[1].line, 3);

        let opts = ReadOptions {
            sheet: Some("Sheet9".to_owned()),
            ..ReadOptions::default()
        };
        let err = Sheet::open(&file.0, &opts).unwrap_err();
        assert_eq!(err.code(), "unknown_sheet");
        match &err {
            ReadError::UnknownSheet { name, sheets } => {
                assert_eq!(name, "Sheet9");
                assert_eq!(sheets, &cells(&["客户", "Orders"]));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("客户, Orders"));
        assert!(err.message_zh().contains("Sheet9"));
    }

    #[test]
    fn xlsx_format_declared_on_a_text_file_is_bad_xlsx() {
        let opts = ReadOptions {
            format: Some(Format::Xlsx),
            ..ReadOptions::default()
        };
        let err = open(b"a,b\n1,2\n", &opts).unwrap_err();
        assert_eq!(err.code(), "bad_xlsx");
        // Sniffed as a ZIP, but not one.
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend(junk(10_000, 9));
        let err = open(&bytes, &ReadOptions::default()).unwrap_err();
        assert_eq!(err.code(), "bad_xlsx");
    }

    #[test]
    fn xlsx_header_only_and_empty_sheet() {
        use rust_xlsxwriter::Workbook;
        let mut wb = Workbook::new();
        wb.add_worksheet().write_string(2, 1, "only").unwrap();
        wb.add_worksheet();
        let file = Temp::new("xlsx", b"");
        wb.save(&file.0).unwrap();
        let mut sheet = Sheet::open(&file.0, &ReadOptions::default()).unwrap();
        assert_eq!(sheet.info().headers, cells(&["", "only"]));
        assert!(sheet.next_row().unwrap().is_none());
        let opts = ReadOptions {
            sheet: Some("Sheet2".to_owned()),
            ..ReadOptions::default()
        };
        assert_eq!(
            Sheet::open(&file.0, &opts).unwrap_err().code(),
            "empty_file"
        );
    }

    #[test]
    fn cell_text_conversions() {
        assert_eq!(float_text(120.0), "120");
        assert_eq!(float_text(-0.0), "0");
        assert_eq!(float_text(1.5), "1.5");
        assert_eq!(float_text(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float_text(1e20), "100000000000000000000");
        assert_eq!(duration_text(1.5), "36:00:00");
        assert_eq!(
            cell_text(&DataRef::Error(calamine::CellErrorType::NA)),
            "#N/A"
        );
        assert_eq!(
            cell_text(&DataRef::DateTimeIso("2024-03-05".into())),
            "2024-03-05"
        );
        assert_eq!(cell_text(&DataRef::Int(7)), "7");
        assert_eq!(cell_text(&DataRef::Empty), "");
        let dt =
            calamine::ExcelDateTime::new(45356.5, calamine::ExcelDateTimeType::DateTime, false);
        assert_eq!(cell_text(&DataRef::DateTime(dt)), "2024-03-05T12:00:00");
        let d = calamine::ExcelDateTime::new(2.0, calamine::ExcelDateTimeType::TimeDelta, false);
        assert_eq!(cell_text(&DataRef::DateTime(d)), "48:00:00");
    }

    #[test]
    fn error_codes_are_stable() {
        let all = [
            ReadError::Empty,
            ReadError::DuplicateHeader { name: "a".into() },
            ReadError::TooManyColumns { count: 2, max: 1 },
            ReadError::Binary,
            ReadError::UnknownEncoding,
            ReadError::RecordTooLarge { line: 1 },
            ReadError::Xlsx("x".into()),
            ReadError::UnknownSheet {
                name: "a".into(),
                sheets: vec![],
            },
            ReadError::Io(io::Error::other("x")),
        ];
        let codes: Vec<&str> = all.iter().map(ReadError::code).collect();
        assert_eq!(
            codes,
            [
                "empty_file",
                "duplicate_header",
                "too_many_columns",
                "binary_file",
                "unknown_encoding",
                "record_too_large",
                "bad_xlsx",
                "unknown_sheet",
                "io"
            ]
        );
        for e in &all {
            assert!(!e.to_string().is_empty() && !e.message_zh().is_empty());
        }
    }
}
