//! The device's practical memory bandwidth, measured the way the roofline needs it: a large
//! device-to-device copy, counting bytes read plus bytes written, median of repeats.

use super::memory::{DeviceBuffer, Event};
use super::runtime::{GpuRuntime, RuntimeError};
use std::sync::Arc;

/// Large enough to dwarf the L2 (50 MB on an H100) and launch overhead.
const BYTES: usize = 512 << 20;
const REPEATS: usize = 10;

pub fn measure_copy_bandwidth(runtime: &Arc<dyn GpuRuntime>) -> Result<f64, RuntimeError> {
    let src = DeviceBuffer::<u8>::zeroed(runtime, BYTES)?;
    let dst = DeviceBuffer::<u8>::alloc(runtime, BYTES)?;
    let (start, end) = (Event::new(runtime)?, Event::new(runtime)?);
    let mut ms = Vec::with_capacity(REPEATS);
    for i in 0..=REPEATS {
        start.record()?;
        // SAFETY: both buffers hold BYTES bytes and live until the events below have completed.
        unsafe { runtime.copy_dtod(dst.ptr(), src.ptr(), BYTES)? };
        end.record()?;
        let t = start.elapsed_ms(&end)?;
        if i > 0 {
            ms.push(t as f64);
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(2.0 * BYTES as f64 / (ms[REPEATS / 2] / 1e3))
}
