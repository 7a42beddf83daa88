//! Bulk statements: multi-row inserts written as plain text with bound values, in a few
//! sizes, so a connection prepares each once.

/// One multi-row `INSERT` with bound values, `columns.len()` of them per row. Its text
/// depends only on the table, the columns and the row count, so prepared statements are
/// reused, and no query tree is built for thousands of values. Table and columns come
/// from the metadata or the system's own tables.
pub fn insert_statement(
    backend: sea_orm::DbBackend,
    table: &str,
    columns: &[&str],
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let sql = insert_sql(
        table,
        columns,
        values.len() / columns.len().max(1),
        backend == sea_orm::DbBackend::Postgres,
    );
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// `items` in runs of `max`, then of falling powers of two: bulk statements come in a few
/// sizes, whose prepared statements the connection keeps, instead of a new size (and a
/// new parse of thousands of placeholders) for nearly every batch.
pub fn runs<T>(items: &[T], max: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let n = if rest.len() >= max {
            max.max(1)
        } else {
            1 << rest.len().ilog2()
        };
        let (run, after) = rest.split_at(n);
        out.push(run);
        rest = after;
    }
    out
}

/// The text of a multi-row insert: `?` placeholders, or `$n` ones when `numbered`.
fn insert_sql(table: &str, columns: &[&str], rows: usize, numbered: bool) -> String {
    use std::fmt::Write;
    let names: Vec<String> = columns.iter().map(|c| crate::forms::q(c)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        crate::forms::q(table),
        names.join(", ")
    );
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                let _ = write!(sql, "${n}");
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_statements_come_in_few_sizes() {
        let items: Vec<u32> = (0..1234).collect();
        let sizes: Vec<usize> = runs(&items, 500).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [500, 500, 128, 64, 32, 8, 2]);
        let back: Vec<u32> = runs(&items, 500).concat();
        assert_eq!(back, items);
        assert!(runs::<u32>(&[], 500).is_empty());
    }

    #[test]
    fn insert_text_has_one_placeholder_per_value() {
        let cols = ["id", "name"];
        assert_eq!(
            insert_sql("rec_lead", &cols, 2, false),
            "INSERT INTO \"rec_lead\" (\"id\", \"name\") VALUES (?, ?), (?, ?)"
        );
        assert_eq!(
            insert_sql("rec_lead", &cols, 2, true),
            "INSERT INTO \"rec_lead\" (\"id\", \"name\") VALUES ($1, $2), ($3, $4)"
        );
    }
}
