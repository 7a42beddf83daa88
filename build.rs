//! Embeds the demo CRM bundle so `trellis serve --demo` works from any directory.

use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=examples/crm");
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new("examples/crm");
    let manifest = fs::read_to_string(dir.join("bundle.json")).unwrap_or_else(|_| "{}".into());
    let read_all = |sub: &str| -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir.join(sub))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .collect()
    };
    let forms = read_all("forms");
    let roles = read_all("roles");
    let rules = read_all("rules");
    let workflows = read_all("workflows");
    let reports = read_all("reports");
    let dashboards = read_all("dashboards");
    // The manifest without its closing brace, then the forms: the binary parses the result.
    let manifest = manifest
        .trim()
        .trim_end_matches('}')
        .trim_end()
        .trim_end_matches(',')
        .to_owned();
    let doc = format!(
        "{manifest},\n\"forms\": [\n{}\n],\n\"roles\": [\n{}\n],\n\"rules\": [\n{}\n],\n\"workflows\": [\n{}\n],\n\"reports\": [\n{}\n],\n\"dashboards\": [\n{}\n]\n}}\n",
        forms.join(",\n"),
        roles.join(",\n"),
        rules.join(",\n"),
        workflows.join(",\n"),
        reports.join(",\n"),
        dashboards.join(",\n")
    );
    let _ = fs::write(Path::new(&out).join("crm_bundle.json"), doc);
    let demo = fs::read_to_string(dir.join("demo.json")).unwrap_or_else(|_| "{}".into());
    let _ = fs::write(Path::new(&out).join("crm_demo.json"), demo);
}
