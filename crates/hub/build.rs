//! Embeds the lobby page (`lobby/`, plain files, no build step) into the hub binary:
//! writes `$OUT_DIR/lobby_files.rs`, a list of `(path, include_bytes!(file))` for
//! every regular, non-hidden file under `lobby/`, so `coven hub` serves the page
//! from any working directory. A missing or empty folder yields an empty list.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        // `lobby/src/` holds the sources of the bundled `app.js` (docs/clients.md), not served.
        if dir == root && name == "src" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((relative, path));
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let root = Path::new(&manifest).join("lobby");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut code = String::from("&[\n");
    for (relative, path) in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            code,
            "    ({relative:?}, include_bytes!({:?}) as &[u8]),",
            path.display().to_string()
        );
    }
    code.push_str("]\n");
    std::fs::write(Path::new(&out_dir).join("lobby_files.rs"), code).expect("OUT_DIR is writable");
}
