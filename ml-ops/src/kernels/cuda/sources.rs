//! The CUDA C sources of ember's kernels and their compilation with NVRTC.
//!
//! Each `.cu` file is compiled on its own with `common.cuh` prepended, so NVRTC
//! needs no include paths. The same compilation runs in CI on machines without
//! a GPU (libnvrtc from the `nvidia-cuda-nvrtc` wheel), which checks every
//! source even where nothing can launch it.

use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

const COMMON: &str = include_str!("common.cuh");

/// One `.cu` file and the kernels it defines.
pub struct Source {
    pub name: &'static str,
    pub text: &'static str,
    pub kernels: &'static [&'static str],
}

/// Every kernel source, with the entry points ember launches.
pub const SOURCES: &[Source] = &[
    Source {
        name: "gram.cu",
        text: include_str!("gram.cu"),
        kernels: &["gram_pairs"],
    },
    Source {
        name: "logistic.cu",
        text: include_str!("logistic.cu"),
        kernels: &["logistic_rows"],
    },
    Source {
        name: "kmeans.cu",
        text: include_str!("kmeans.cu"),
        kernels: &["kmeans_assign", "kmeans_sums"],
    },
    Source {
        name: "histogram.cu",
        text: include_str!("histogram.cu"),
        kernels: &["histogram_rows"],
    },
    Source {
        name: "transform.cu",
        text: include_str!("transform.cu"),
        kernels: &["affine_columns", "polynomial_expand", "one_hot_expand"],
    },
];

/// Whether libnvrtc can be loaded (cudarc panics on first use otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles `source` to PTX for `arch` (e.g. "sm_90"; `None` for NVRTC's
/// default). The caller checks [`nvrtc_present`] first.
pub fn compile(source: &Source, arch: Option<&'static str>) -> Result<Ptx, String> {
    let text = format!("{COMMON}\n{}", source.text);
    let options = CompileOptions {
        arch,
        name: Some(source.name.to_string()),
        ..Default::default()
    };
    compile_ptx_with_opts(text, options)
        .map_err(|e| format!("NVRTC cannot compile {}: {e}", source.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source compiles to PTX that defines its kernels. Needs libnvrtc but
    /// no GPU; CI installs it (`EMBER_REQUIRE_NVRTC=1` makes its absence fail).
    #[test]
    fn every_source_compiles_to_ptx() {
        if !nvrtc_present() {
            assert!(
                std::env::var_os("EMBER_REQUIRE_NVRTC").is_none(),
                "EMBER_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
            );
            eprintln!("skipped: libnvrtc not found, CUDA sources not compiled");
            return;
        }
        for source in SOURCES {
            let ptx = compile(source, None).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for kernel in source.kernels {
                assert!(
                    text.contains(&format!(".entry {kernel}(")),
                    "{} has no entry {kernel}",
                    source.name
                );
            }
        }
    }
}
