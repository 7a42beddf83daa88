//! Local stand-ins for the services a workflow talks to: an SMTP server that keeps every
//! mail it is sent, and an HTTP endpoint that records webhook calls. Both listen on
//! 127.0.0.1 on a free port and stop when dropped.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Longest line either server reads; longer ones drop the connection.
const MAX_LINE: u64 = 1024 * 1024;
/// Largest mail or request body either server keeps.
const MAX_BODY: usize = 16 * 1024 * 1024;
const POLL: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// Accepts connections for ever, each handled in its own task. The tasks live in a
/// `JoinSet` owned by this future, so aborting the server also ends every open connection.
async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                sessions.spawn(handle(stream));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Reads one line, terminator included, into `buf`. `None` at end of stream, on an error,
/// on a line longer than `MAX_LINE` or on a last line without a terminator.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<()> {
    buf.clear();
    let n = (&mut *r).take(MAX_LINE).read_until(b'\n', buf).await.ok()?;
    (n > 0 && buf.ends_with(b"\n")).then_some(())
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

// ---------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------

/// An SMTP server (plain, no TLS, no AUTH) that accepts every mail and keeps it.
pub struct SmtpSink {
    /// The port it listens on at 127.0.0.1.
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: JoinHandle<()>,
}

/// One delivered mail: the envelope and the message as sent after `DATA`.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The `MAIL FROM` address, without angle brackets (empty for the null sender).
    pub from: String,
    /// The `RCPT TO` addresses, without angle brackets, in order.
    pub to: Vec<String>,
    /// The message, headers and body, dot-stuffing undone, line endings as received.
    pub data: String,
}

impl SmtpSink {
    /// Starts the server on a free port.
    pub async fn start() -> SmtpSink {
        let (listener, port) = bind().await;
        let mails = Arc::new(Mutex::new(Vec::new()));
        let shared = mails.clone();
        let task = tokio::spawn(serve(listener, move |stream| {
            smtp_session(stream, shared.clone())
        }));
        SmtpSink { port, mails, task }
    }

    /// Every mail received so far, in the order their `DATA` ended.
    pub fn mails(&self) -> Vec<Mail> {
        lock(&self.mails).clone()
    }

    /// Waits until at least `n` mails have arrived or `timeout` has passed, and returns
    /// what has arrived either way.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= n || Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn smtp_session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let _ = smtp_conversation(stream, &mails).await;
}

/// Speaks RFC 5321 until `QUIT`; `None` when the client went away or misbehaved.
async fn smtp_conversation(stream: TcpStream, mails: &Mutex<Vec<Mail>>) -> Option<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    wr.write_all(b"220 trellis-test ESMTP ready\r\n")
        .await
        .ok()?;
    loop {
        read_line(&mut rd, &mut line).await?;
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let (verb, arg) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                (from, to) = (None, Vec::new());
                b"250-trellis-test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n"
            }
            "HELO" => {
                (from, to) = (None, Vec::new());
                b"250 trellis-test\r\n"
            }
            "MAIL" => match path_argument(arg, "FROM:") {
                Some(address) => {
                    (from, to) = (Some(address), Vec::new());
                    b"250 OK\r\n"
                }
                None => b"501 Syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match path_argument(arg, "TO:") {
                _ if from.is_none() => b"503 MAIL first\r\n",
                Some(address) if !address.is_empty() => {
                    to.push(address);
                    b"250 OK\r\n"
                }
                _ => b"501 Syntax: RCPT TO:<address>\r\n",
            },
            "DATA" if to.is_empty() => b"503 RCPT first\r\n",
            "DATA" => {
                wr.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .ok()?;
                let data = read_data(&mut rd, &mut line).await?;
                let mail = Mail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                };
                lock(mails).push(mail);
                b"250 OK queued\r\n"
            }
            "RSET" => {
                (from, to) = (None, Vec::new());
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                wr.write_all(b"221 Bye\r\n").await.ok()?;
                return Some(());
            }
            _ => b"502 Command not implemented\r\n",
        };
        wr.write_all(reply).await.ok()?;
    }
}

/// The address in `FROM:<a@b> PARAM=…` or `TO:<a@b>`, brackets removed.
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let address = match rest.strip_prefix('<') {
        Some(inner) => &inner[..inner.find('>')?],
        None => rest.split_whitespace().next()?,
    };
    Some(address.to_owned())
}

/// Reads the mail after `354` up to the lone `.` line, undoing dot-stuffing.
async fn read_data<R: AsyncBufRead + Unpin>(rd: &mut R, line: &mut Vec<u8>) -> Option<String> {
    let mut data = Vec::new();
    loop {
        read_line(rd, line).await?;
        if trim_eol(line) == b"." {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
        let content = line.strip_prefix(b".").unwrap_or(line);
        if data.len() + content.len() > MAX_BODY {
            return None;
        }
        data.extend_from_slice(content);
    }
}

impl Mail {
    /// The first header called `name` (any case), unfolded, with RFC 2047 encoded words
    /// (`=?utf-8?b?…?=`) decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = split_message(&self.data);
        find_header(&parse_headers(head), name).map(|v| decode_words(&v))
    }

    /// The text after the blank line, decoded from quoted-printable or base64 as its
    /// `Content-Transfer-Encoding` says, with `\n` line endings and without the line break
    /// that ends every SMTP message. For a multipart mail, the first `text/plain` part
    /// (or else the first part).
    pub fn body(&self) -> String {
        let (head, body) = split_message(&self.data);
        part_text(head, body)
    }
}

/// Splits a message (or MIME part) at its first empty line into headers and body.
fn split_message(data: &str) -> (&str, &str) {
    let mut pos = 0;
    for line in data.split_inclusive('\n') {
        if trim_eol(line.as_bytes()).is_empty() {
            return (&data[..pos], &data[pos + line.len()..]);
        }
        pos += line.len();
    }
    (data, "")
}

/// The header lines, continuation lines joined to the header they continue.
fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    for (_, value) in &mut headers {
        *value = value.trim().to_owned();
    }
    headers
}

fn find_header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// A parameter of a header value such as `multipart/alternative; boundary="x"`.
fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (key, v) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn part_text(head: &str, body: &str) -> String {
    let headers = parse_headers(head);
    let content_type = find_header(&headers, "content-type").unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("multipart/")
        && let Some(boundary) = header_param(&content_type, "boundary")
    {
        let parts: Vec<(&str, &str)> = multipart(body, &boundary)
            .into_iter()
            .map(split_message)
            .collect();
        let plain = parts.iter().find(|(h, _)| {
            find_header(&parse_headers(h), "content-type")
                .is_none_or(|t| t.to_ascii_lowercase().starts_with("text/plain"))
        });
        if let Some((h, b)) = plain.or(parts.first()) {
            return part_text(h, b);
        }
    }
    // The line break before the terminating `.` (or before a MIME boundary) is the
    // transport's, not the text's.
    let body = body
        .strip_suffix("\r\n")
        .or_else(|| body.strip_suffix('\n'))
        .unwrap_or(body);
    let encoding = find_header(&headers, "content-transfer-encoding").unwrap_or_default();
    let bytes = match encoding.to_ascii_lowercase().as_str() {
        "quoted-printable" => decode_quoted_printable(body.as_bytes()),
        "base64" => decode_base64(body.as_bytes()),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

/// The parts between `--boundary` lines, up to `--boundary--`.
fn multipart<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start = None;
    let mut pos = 0;
    for line in body.split_inclusive('\n') {
        let text = line.trim_end();
        let closing = text.strip_suffix("--") == Some(delimiter.as_str());
        if closing || text == delimiter {
            if let Some(s) = start {
                parts.push(&body[s..pos]);
            }
            if closing {
                return parts;
            }
            start = Some(pos + line.len());
        }
        pos += line.len();
    }
    parts
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Quoted-printable (RFC 2045): `=XX` bytes and `=` soft line breaks.
fn decode_quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'=' {
            let rest = &text[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(hi), Some(lo)) = (
                rest.first().copied().and_then(hex_digit),
                rest.get(1).copied().and_then(hex_digit),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// Base64 (RFC 4648), skipping line breaks and padding.
fn decode_base64(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // `acc` holds fewer than `bits + 8` bits here, so this is exactly one byte.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded words; whitespace between two adjacent words is dropped, and
/// their bytes are joined before UTF-8 decoding since a character may span both.
fn decode_words(value: &str) -> String {
    let mut out = Vec::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, tail) = rest.split_at(start);
        match decode_word(tail) {
            Some((bytes, used)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.extend_from_slice(before.as_bytes());
                }
                out.extend_from_slice(&bytes);
                rest = &tail[used..];
                after_word = true;
            }
            None => {
                out.extend_from_slice(before.as_bytes());
                out.extend_from_slice(b"=?");
                rest = &tail[2..];
                after_word = false;
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// One `=?charset?B|Q?text?=` word at the start of `s` (any charset is read as UTF-8):
/// its bytes and the length it took.
fn decode_word(s: &str) -> Option<(Vec<u8>, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => decode_base64(text.as_bytes()),
        "Q" | "q" => decode_quoted_printable(text.replace('_', " ").as_bytes()),
        _ => return None,
    };
    Some((bytes, s.len() - inner.len() + end + 2))
}

// ---------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------

/// An HTTP/1.1 endpoint that records every request: it answers the first `fail_first` with
/// 503 and the rest with 200 `{"ok":true}`, or, when hanging, never answers at all.
pub struct HookReceiver {
    /// The port it listens on at 127.0.0.1.
    pub port: u16,
    state: Arc<HookState>,
    task: JoinHandle<()>,
}

struct HookState {
    fail_first: usize,
    hang: bool,
    hits: Mutex<Vec<Hit>>,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    /// Header names as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status answered; 0 when the receiver hangs and never answered.
    pub status: u16,
    /// When the whole request had been read.
    pub at: Instant,
}

impl HookReceiver {
    /// Starts a receiver that fails the first `fail_first` requests with 503.
    pub async fn start(fail_first: usize) -> HookReceiver {
        Self::launch(fail_first, false).await
    }

    /// Starts a receiver that reads each request and never answers, for timeout tests.
    pub async fn start_hanging() -> HookReceiver {
        Self::launch(0, true).await
    }

    async fn launch(fail_first: usize, hang: bool) -> HookReceiver {
        let (listener, port) = bind().await;
        let state = Arc::new(HookState {
            fail_first,
            hang,
            hits: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(serve(listener, move |stream| {
            hook_session(stream, shared.clone())
        }));
        HookReceiver { port, state, task }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        lock(&self.state.hits).clone()
    }

    /// Waits until some request was answered 200 or `timeout` has passed, and returns
    /// every request received either way.
    pub async fn wait_for_ok(&self, timeout: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits = self.hits();
            if hits.iter().any(|h| h.status == 200) || Instant::now() >= deadline {
                return hits;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hit {
    /// The first header called `name`, in any case.
    pub fn header(&self, name: &str) -> Option<String> {
        find_header(&self.headers, name)
    }
}

/// Serves requests on one connection for as long as the client keeps it alive.
async fn hook_session(stream: TcpStream, state: Arc<HookState>) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    while let Some((mut hit, keep_alive)) = read_request(&mut rd).await {
        if state.hang {
            lock(&state.hits).push(hit);
            // Hold the connection open, unanswered, until the client gives up.
            let mut sink = [0u8; 1024];
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        let status = {
            let mut hits = lock(&state.hits);
            hit.status = if hits.len() < state.fail_first {
                503
            } else {
                200
            };
            hits.push(hit.clone());
            hit.status
        };
        let (reason, body) = match status {
            200 => ("OK", r#"{"ok":true}"#),
            _ => ("Service Unavailable", r#"{"ok":false}"#),
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            },
        );
        if wr.write_all(response.as_bytes()).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request: request line, headers, and a `Content-Length` or chunked body; also
/// whether the client wants the connection kept open after the answer.
async fn read_request<R: AsyncBufRead + Unpin>(rd: &mut R) -> Option<(Hit, bool)> {
    let mut line = Vec::new();
    read_line(rd, &mut line).await?;
    let request_line = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    let mut words = request_line.split_whitespace();
    let (method, path, version) = (words.next()?, words.next()?, words.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        read_line(rd, &mut line).await?;
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        if text.is_empty() {
            break;
        }
        let (name, value) = text.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
        if headers.len() > 200 {
            return None;
        }
    }
    let chunked = find_header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(rd, &mut line).await?
    } else {
        let length = match find_header(&headers, "content-length") {
            Some(v) => v.parse::<usize>().ok()?,
            None => 0,
        };
        if length > MAX_BODY {
            return None;
        }
        let mut body = vec![0; length];
        rd.read_exact(&mut body).await.ok()?;
        body
    };
    let connection = find_header(&headers, "connection").unwrap_or_default();
    let keep_alive = if version == "HTTP/1.0" {
        connection.eq_ignore_ascii_case("keep-alive")
    } else {
        !connection.eq_ignore_ascii_case("close")
    };
    let hit = Hit {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
        at: Instant::now(),
    };
    Some((hit, keep_alive))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(rd: &mut R, line: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        read_line(rd, line).await?;
        let size_text = String::from_utf8_lossy(trim_eol(line)).into_owned();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                read_line(rd, line).await?;
                if trim_eol(line).is_empty() {
                    return Some(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return None;
        }
        let start = body.len();
        body.resize(start + size, 0);
        rd.read_exact(&mut body[start..]).await.ok()?;
        read_line(rd, line).await?;
    }
}

// ---------------------------------------------------------------------------------------
// Tests of the stand-ins themselves
// ---------------------------------------------------------------------------------------

/// A raw SMTP client: sends text as given and reads whole (multi-line) replies.
struct SmtpClient {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl SmtpClient {
    async fn connect(port: u16) -> (SmtpClient, String) {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (rd, wr) = stream.into_split();
        let mut client = SmtpClient {
            rd: BufReader::new(rd),
            wr,
        };
        let greeting = client.reply().await;
        (client, greeting)
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.rd.read_line(&mut line).await.unwrap();
            assert!(line.len() >= 4, "short reply line {line:?}");
            all.push_str(&line);
            if line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    /// Sends `text` (CRLFs included) and returns the reply.
    async fn send(&mut self, text: &str) -> String {
        self.wr.write_all(text.as_bytes()).await.unwrap();
        self.reply().await
    }

    /// Sends `text` and checks that the reply has the status `code`.
    async fn expect(&mut self, text: &str, code: &str) -> String {
        let reply = self.send(text).await;
        assert!(reply.starts_with(code), "{text:?} got {reply:?}");
        reply
    }
}

#[tokio::test]
async fn smtp_sink_takes_two_mails_on_one_connection() {
    let sink = SmtpSink::start().await;
    let (mut c, greeting) = SmtpClient::connect(sink.port).await;
    assert!(greeting.starts_with("220 "), "{greeting}");

    let ehlo = c.expect("EHLO client.test\r\n", "250-").await;
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );

    let mail_from = "MAIL FROM:<alice@example.test> BODY=8BITMIME SMTPUTF8\r\n";
    c.expect(mail_from, "250").await;
    c.expect("RCPT TO:<bob@example.test>\r\n", "250").await;
    c.expect("rcpt to:<carol@example.test>\r\n", "250").await;
    c.expect("DATA\r\n", "354").await;
    let first = "From: Alice <alice@example.test>\r\n\
        To: bob@example.test, carol@example.test\r\n\
        Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n dem Test\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Gr=C3=BC=C3=9Fe =E4=BD=A0=E5=A5=BD, a long line broken by a so=\r\n\
        ft line break\r\n\
        ..starts with a dot\r\n\
        .\r\n";
    c.expect(first, "250").await;

    c.expect("RSET\r\n", "250").await;
    c.expect("NOOP\r\n", "250").await;
    c.expect("VRFY bob\r\n", "502").await;
    c.expect("DATA\r\n", "503").await;
    c.expect("MAIL FROM:<>\r\n", "250").await;
    c.expect("RCPT TO:<dave@example.test>\r\n", "250").await;
    c.expect("DATA\r\n", "354").await;
    let second = "Subject: Second\r\n\r\nJust text.\r\n.\r\n";
    c.expect(second, "250").await;
    c.expect("QUIT\r\n", "221").await;

    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    let m = &mails[0];
    assert_eq!(m.from, "alice@example.test");
    assert_eq!(m.to, ["bob@example.test", "carol@example.test"]);
    assert!(m.data.contains("\r\n.starts with a dot\r\n"), "{}", m.data);
    assert!(!m.data.contains(".."), "{}", m.data);
    assert_eq!(m.header("SUBJECT").as_deref(), Some("Grüße aus dem Test"));
    assert_eq!(
        m.header("to").as_deref(),
        Some("bob@example.test, carol@example.test")
    );
    assert_eq!(m.header("x-missing"), None);
    assert_eq!(
        m.body(),
        "Grüße 你好, a long line broken by a soft line break\n.starts with a dot"
    );
    let m = &mails[1];
    assert_eq!(m.from, "");
    assert_eq!(m.to, ["dave@example.test"]);
    assert_eq!(m.header("subject").as_deref(), Some("Second"));
    assert_eq!(m.body(), "Just text.");
}

#[tokio::test]
async fn smtp_sink_serves_connections_side_by_side_and_stops_on_drop() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let (mut a, _) = SmtpClient::connect(port).await;
    let (mut b, _) = SmtpClient::connect(port).await;
    a.expect("HELO a\r\n", "250").await;
    b.expect("HELO b\r\n", "250").await;
    // Pipelined, as a client may once the server advertises PIPELINING.
    let envelope = "MAIL FROM:<a@x.test>\r\nRCPT TO:<r@x.test>\r\nDATA\r\n";
    a.expect(envelope, "250").await;
    assert!(a.reply().await.starts_with("250"));
    assert!(a.reply().await.starts_with("354"));
    b.expect("MAIL FROM:<b@x.test>\r\n", "250").await;
    b.expect("RCPT TO:<r@x.test>\r\n", "250").await;
    b.expect("DATA\r\n", "354").await;
    let base64 = "Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8sIELDtmIh\r\n.\r\n";
    b.expect(base64, "250").await;
    a.expect("\r\nfrom a\r\n.\r\n", "250").await;

    let mails = sink.wait_for(2, Duration::from_secs(1)).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].from, "b@x.test");
    assert_eq!(mails[0].body(), "Hello, Böb!");
    assert_eq!(mails[1].body(), "from a");

    drop(sink);
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn mail_reads_multipart_and_split_encoded_words() {
    let mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: "Subject: =?utf-8?b?R3LD?=\r\n =?utf-8?b?vMOfZQ==?= und =?bad word\r\n\
            Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\
            \r\n\
            preamble\r\n\
            --b1\r\n\
            Content-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n\
            --b1\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\r\n\
            Plain =C3=A4\r\nline two\r\n\
            --b1--\r\n"
            .into(),
    };
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Grüße und =?bad word")
    );
    assert_eq!(mail.body(), "Plain ä\nline two");
}

#[tokio::test]
async fn hook_receiver_fails_first_requests_then_answers_ok() {
    let hooks = HookReceiver::start(2).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for n in 1..=3 {
        let response = client
            .post(hooks.url("/hook?run=1"))
            .header("X-Trellis-Signature", format!("sig-{n}"))
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        let body = response.text().await.unwrap();
        assert!(body.starts_with(r#"{"ok":"#), "{body}");
    }
    assert_eq!(statuses, [503, 503, 200]);

    let hits = hooks.wait_for_ok(Duration::from_secs(1)).await;
    assert_eq!(hits.len(), 3);
    for (n, hit) in (1..).zip(&hits) {
        assert_eq!(hit.method, "POST");
        assert_eq!(hit.path, "/hook?run=1");
        assert_eq!(hit.body, format!(r#"{{"n":{n}}}"#));
        assert_eq!(hit.header("x-trellis-signature"), Some(format!("sig-{n}")));
        assert_eq!(
            hit.header("CONTENT-TYPE").as_deref(),
            Some("application/json")
        );
    }
    let answered: Vec<u16> = hits.iter().map(|h| h.status).collect();
    assert_eq!(answered, [503, 503, 200]);
    assert!(hits[0].at <= hits[1].at && hits[1].at <= hits[2].at);
}

#[tokio::test]
async fn hanging_hook_receiver_makes_the_caller_time_out() {
    let hooks = HookReceiver::start_hanging().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = client
        .post(hooks.url("/slow"))
        .body("payload")
        .send()
        .await
        .expect_err("a receiver that never answers");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let hits = hooks.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, "/slow");
    assert_eq!(hits[0].body, "payload");
    assert_eq!(hits[0].status, 0);
    assert_eq!(hooks.wait_for_ok(Duration::from_millis(50)).await.len(), 1);
}
