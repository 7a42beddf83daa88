//! Reading spreadsheets for import: CSV in any delimiter and common encodings and XLSX
//! sheets, streamed row by row with bounded memory; cell text conversion; and suggested
//! column-to-field mapping. No database or HTTP work happens here.

pub mod cell;
pub mod convert;
pub mod mapping;
pub mod source;

pub use mapping::{MatchedBy, Suggestion, fold_header, suggest};
pub use source::{
    Encoding, Format, ReadError, ReadOptions, Row, Sheet, SourceInfo, UnknownEncodingName,
    UnknownFormatName,
};
