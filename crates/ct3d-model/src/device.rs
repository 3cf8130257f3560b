//! Which hardware runs the model: `--device cpu|cuda|vulkan`.
//!
//! burn 0.22 dispatches backends at run time through its [`Device`] value, so the model code has
//! no backend type parameter; this module is the one place that turns the user's choice into
//! such a value. `cpu` is burn's pure-Rust `flex` backend and is always compiled in. `cuda` and
//! `vulkan` exist only when this crate is built with the Cargo features of the same names, and
//! choosing one that is missing, or one for which the machine has no GPU, is a one-line error
//! rather than a panic inside burn.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// The device a user asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// burn's pure-Rust `flex` CPU backend (SIMD, all cores through rayon).
    #[default]
    Cpu,
    /// The first NVIDIA GPU, through CUDA (Cargo feature `cuda`).
    Cuda,
    /// The preferred Vulkan GPU, through wgpu/SPIR-V (Cargo feature `vulkan`).
    Vulkan,
}

/// Why a [`DeviceChoice`] could not be parsed or turned into a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceSelectionError {
    /// The text is none of `cpu`, `cuda`, `vulkan`.
    #[error("unknown device `{0}`: expected cpu, cuda or vulkan")]
    Unknown(String),
    /// The binary was compiled without the backend's Cargo feature.
    #[error(
        "ct3d was built without the `{feature}` feature; rebuild with `cargo build --release --features {feature}`"
    )]
    NotCompiled {
        /// The Cargo feature that is missing (`cuda` or `vulkan`).
        feature: &'static str,
    },
    /// The backend is compiled in but the machine offers no device for it.
    #[error("no {api} GPU found{hint}")]
    NoGpu {
        /// `CUDA` or `Vulkan`.
        api: &'static str,
        /// What to check, starting with "; ", or empty.
        hint: &'static str,
    },
}

impl DeviceChoice {
    /// The name used on the command line (`cpu`, `cuda`, `vulkan`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Vulkan => "vulkan",
        }
    }

    /// The burn device for this choice, without autodiff (call `.autodiff()` on it to train).
    ///
    /// For a GPU this asks the driver which devices exist, so it fails cleanly on a machine
    /// without one instead of panicking at the first tensor.
    pub fn resolve(self) -> Result<Device, DeviceSelectionError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            DeviceChoice::Cuda => resolve_cuda(),
            DeviceChoice::Vulkan => resolve_vulkan(),
        }
    }
}

#[cfg(feature = "cuda")]
fn resolve_cuda() -> Result<Device, DeviceSelectionError> {
    use burn::tensor::DeviceType;
    // cubecl answers "no devices" (rather than panicking) when libcuda cannot be loaded.
    if Device::enumerate(DeviceType::Cuda).is_empty() {
        return Err(DeviceSelectionError::NoGpu {
            api: "CUDA",
            hint: "; is the NVIDIA driver (libcuda.so.1) installed and a GPU visible?",
        });
    }
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn resolve_cuda() -> Result<Device, DeviceSelectionError> {
    Err(DeviceSelectionError::NotCompiled { feature: "cuda" })
}

#[cfg(feature = "vulkan")]
fn resolve_vulkan() -> Result<Device, DeviceSelectionError> {
    use burn::tensor::{DeviceKind, DeviceType};
    if Device::enumerate(DeviceType::Vulkan).is_empty() {
        return Err(DeviceSelectionError::NoGpu {
            api: "Vulkan",
            hint: "; is a Vulkan driver (ICD) installed?",
        });
    }
    // The default kind lets wgpu prefer a discrete, high-power adapter.
    Ok(Device::vulkan(DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "vulkan"))]
fn resolve_vulkan() -> Result<Device, DeviceSelectionError> {
    Err(DeviceSelectionError::NotCompiled { feature: "vulkan" })
}

impl FromStr for DeviceChoice {
    type Err = DeviceSelectionError;

    /// Parses `cpu`, `cuda` or `vulkan` (any letter case, surrounding spaces ignored).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "vulkan" => Ok(DeviceChoice::Vulkan),
            _ => Err(DeviceSelectionError::Unknown(text.to_owned())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_names_and_rejects_others() {
        for choice in [DeviceChoice::Cpu, DeviceChoice::Cuda, DeviceChoice::Vulkan] {
            assert_eq!(choice.name().parse::<DeviceChoice>(), Ok(choice));
        }
        assert_eq!(" CUDA ".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
        let err = "gpu".parse::<DeviceChoice>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown device `gpu`: expected cpu, cuda or vulkan"
        );
    }

    #[test]
    fn cpu_always_resolves_to_flex() {
        let device = DeviceChoice::Cpu.resolve().unwrap();
        assert_eq!(device, Device::flex());
        assert!(!device.is_autodiff());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_one_line_error() {
        let err = DeviceChoice::Cuda.resolve().unwrap_err();
        assert_eq!(
            err.to_string(),
            "ct3d was built without the `cuda` feature; rebuild with `cargo build --release --features cuda`"
        );
    }

    #[cfg(not(feature = "vulkan"))]
    #[test]
    fn vulkan_without_the_feature_is_a_one_line_error() {
        let err = DeviceChoice::Vulkan.resolve().unwrap_err();
        assert!(err.to_string().contains("--features vulkan"), "{err}");
    }
}
