//! The vendor runtime layer on its own: device info, memory, module loading, launches, events and
//! graph capture with the position read from device memory. Kernels here are tiny hand-written
//! CUDA compiled by NVRTC to a cubin, so this checks the runtime independently of the code
//! generator. Skips with a printed reason when no NVIDIA GPU/driver/NVRTC is present.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use rocmforge::backend::cuda::CudaRuntime;
use rocmforge::backend::gpu::{
    DeviceBuffer, Event, GpuRuntime, Graph, LaunchDims, Module, RuntimeError,
};
use rocmforge::backend::hip::HipRuntime;

const KERNELS: &str = r#"
extern "C" __global__ void axpy(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
// One decode-like step: the position comes from device memory, as in a replayed graph.
extern "C" __global__ void mark_position(const int* pos0, float* history) {
    if (threadIdx.x == 0 && blockIdx.x == 0) history[*pos0] += (float)(*pos0 + 1);
}
extern "C" __global__ void sum_shared(const float* x, float* out, int n) {
    extern __shared__ float partial[];
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
    partial[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int t = 0; t < blockDim.x; ++t) total += partial[t];
        *out = total;
    }
}
"#;

fn cuda_or_skip() -> Option<Arc<dyn GpuRuntime>> {
    match CudaRuntime::new(0) {
        Ok(rt) => {
            if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                eprintln!(
                    "skipped: CUDA device present but no NVRTC library to build test kernels"
                );
                return None;
            }
            eprintln!("device: {}", rt.info());
            Some(Arc::new(rt))
        }
        Err(e @ (RuntimeError::LibraryMissing(_) | RuntimeError::NoDevice(_))) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("CUDA present but failed to open: {e}"),
    }
}

/// NVRTC source -> cubin for the device's own architecture (what the code generator delivers).
fn cubin_for(runtime: &dyn GpuRuntime, source: &str) -> Vec<u8> {
    use cudarc::nvrtc::{result, sys};
    let src = CString::new(source).unwrap();
    let prog = result::create_program(&src, None).expect("nvrtcCreateProgram");
    let arch = format!("--gpu-architecture={}", runtime.info().arch);
    // SAFETY: `prog` is a live program; options are plain strings.
    let compiled = unsafe { result::compile_program(prog, &[arch]) };
    if compiled.is_err() {
        // SAFETY: live program.
        let log = unsafe { result::get_program_log(prog) }.unwrap_or_default();
        let log: String = log.iter().map(|&c| c as u8 as char).collect();
        panic!("test kernels failed to compile: {log}");
    }
    let mut size = 0usize;
    // SAFETY: live, compiled program; the buffer is sized from nvrtcGetCUBINSize.
    unsafe {
        sys::nvrtcGetCUBINSize(prog, &mut size)
            .result()
            .expect("nvrtcGetCUBINSize");
        let mut cubin = vec![0u8; size];
        sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
            .result()
            .expect("nvrtcGetCUBIN");
        result::destroy_program(prog).expect("nvrtcDestroyProgram");
        cubin
    }
}

fn arg<T>(value: &mut T) -> *mut c_void {
    (value as *mut T).cast()
}

#[test]
fn device_info_is_plausible() {
    let Some(rt) = cuda_or_skip() else { return };
    let info = rt.info();
    assert!(info.arch.starts_with("sm_"), "arch {}", info.arch);
    assert!(info.multiprocessor_count > 0 && info.warp_size == 32);
    assert!(info.l2_cache_bytes > 0 && info.max_shared_per_block >= 48 * 1024);
    let mem = rt.mem_info().unwrap();
    assert!(mem.free > 0 && mem.free <= mem.total && mem.total <= info.total_memory + (1 << 30));
}

#[test]
fn copies_round_trip_and_bounds_are_checked() {
    let Some(rt) = cuda_or_skip() else { return };
    let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
    let mut buf = DeviceBuffer::from_host(&rt, &data).unwrap();
    assert_eq!(buf.to_host().unwrap(), data);
    buf.copy_from_host_at(10, &[7.0, 8.0]).unwrap();
    let mut two = [0f32; 2];
    buf.copy_to_host_at(10, &mut two).unwrap();
    assert_eq!(two, [7.0, 8.0]);
    assert!(buf.copy_from_host_at(999, &[1.0, 2.0]).is_err());
    let zeros = DeviceBuffer::<i32>::zeroed(&rt, 77).unwrap();
    assert_eq!(zeros.to_host().unwrap(), vec![0; 77]);
}

#[test]
fn launch_matches_host_arithmetic() {
    let Some(rt) = cuda_or_skip() else { return };
    let module = Module::load(&rt, &cubin_for(rt.as_ref(), KERNELS)).unwrap();
    let axpy = module.function("axpy").unwrap();
    let n = 10_000usize;
    let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
    let dx = DeviceBuffer::from_host(&rt, &x).unwrap();
    let dy = DeviceBuffer::from_host(&rt, &y).unwrap();
    let (mut px, mut py, mut a, mut nn) = (dx.ptr(), dy.ptr(), 2.5f32, n as i32);
    let dims = LaunchDims {
        grid: (n.div_ceil(256) as u32, 1, 1),
        block: (256, 1, 1),
        shared_bytes: 0,
        dependent: false,
    };
    // SAFETY: the argument list matches axpy's signature; buffers outlive the synchronize below.
    unsafe {
        rt.launch(
            axpy,
            &dims,
            &mut [arg(&mut px), arg(&mut py), arg(&mut a), arg(&mut nn)],
        )
        .unwrap()
    };
    let got = dy.to_host().unwrap();
    for i in 0..n {
        assert_eq!(got[i], 2.5 * x[i] + y[i], "element {i}");
    }
}

#[test]
fn dynamic_shared_memory_above_48k_after_opt_in() {
    let Some(rt) = cuda_or_skip() else { return };
    let module = Module::load(&rt, &cubin_for(rt.as_ref(), KERNELS)).unwrap();
    let sum = module.function("sum_shared").unwrap();
    // 1024 threads x 4 bytes is only 4 KiB; ask for 64 KiB to exercise the opt-in path.
    let shared = 64 * 1024;
    // SAFETY: the function belongs to a live module.
    unsafe { rt.set_max_dynamic_shared(sum, shared).unwrap() };
    let x: Vec<f32> = (0..4096).map(|i| (i % 5) as f32).collect();
    let dx = DeviceBuffer::from_host(&rt, &x).unwrap();
    let out = DeviceBuffer::<f32>::zeroed(&rt, 1).unwrap();
    let (mut px, mut po, mut n) = (dx.ptr(), out.ptr(), x.len() as i32);
    let dims = LaunchDims {
        grid: (1, 1, 1),
        block: (1024, 1, 1),
        shared_bytes: shared,
        dependent: false,
    };
    // SAFETY: arguments match sum_shared; buffers outlive the copy back.
    unsafe {
        rt.launch(sum, &dims, &mut [arg(&mut px), arg(&mut po), arg(&mut n)])
            .unwrap()
    };
    assert_eq!(out.to_host().unwrap()[0], x.iter().sum::<f32>());
}

#[test]
fn graph_replays_with_position_from_device_memory() {
    let Some(rt) = cuda_or_skip() else { return };
    let module = Module::load(&rt, &cubin_for(rt.as_ref(), KERNELS)).unwrap();
    let mark = module.function("mark_position").unwrap();
    let mut pos = DeviceBuffer::<i32>::zeroed(&rt, 1).unwrap();
    let history = DeviceBuffer::<f32>::zeroed(&rt, 16).unwrap();
    let (mut ppos, mut phist) = (pos.ptr(), history.ptr());
    let dims = LaunchDims {
        grid: (1, 1, 1),
        block: (32, 1, 1),
        shared_bytes: 0,
        dependent: false,
    };
    let graph = Graph::capture(&rt, || {
        // SAFETY: arguments match mark_position; both buffers outlive the graph.
        unsafe { rt.launch(mark, &dims, &mut [arg(&mut ppos), arg(&mut phist)]) }
    })
    .unwrap();
    // Capturing ran nothing.
    assert_eq!(history.to_host().unwrap(), vec![0.0; 16]);
    let start = Event::new(&rt).unwrap();
    let end = Event::new(&rt).unwrap();
    start.record().unwrap();
    for p in 0..10 {
        pos.copy_from_host(&[p]).unwrap();
        // SAFETY: every captured address is still allocated.
        unsafe { graph.launch().unwrap() };
    }
    end.record().unwrap();
    let ms = start.elapsed_ms(&end).unwrap();
    let got = history.to_host().unwrap();
    let want: Vec<f32> = (0..16)
        .map(|p| if p < 10 { (p + 1) as f32 } else { 0.0 })
        .collect();
    assert_eq!(got, want);
    assert!((0.0..10_000.0).contains(&ms), "elapsed {ms} ms");
    eprintln!("10 graph replays with position updates: {ms:.3} ms");
}

#[test]
fn failed_launch_inside_capture_leaves_stream_usable() {
    let Some(rt) = cuda_or_skip() else { return };
    let module = Module::load(&rt, &cubin_for(rt.as_ref(), KERNELS)).unwrap();
    let axpy = module.function("axpy").unwrap();
    let bad = LaunchDims {
        grid: (1, 1, 1),
        block: (4096, 1, 1), // above every device's 1024-thread limit
        shared_bytes: 0,
        dependent: false,
    };
    let (mut p, mut a, mut n) = (0u64, 1f32, 0i32);
    let captured = Graph::capture(&rt, || {
        // SAFETY: the launch is rejected before it can run.
        unsafe {
            rt.launch(
                axpy,
                &bad,
                &mut [arg(&mut p), arg(&mut p), arg(&mut a), arg(&mut n)],
            )
        }
    });
    assert!(captured.is_err());
    let buf = DeviceBuffer::from_host(&rt, &[1.0f32, 2.0]).unwrap();
    assert_eq!(buf.to_host().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn missing_kernel_name_is_a_clear_error() {
    let Some(rt) = cuda_or_skip() else { return };
    let module = Module::load(&rt, &cubin_for(rt.as_ref(), KERNELS)).unwrap();
    let err = module.function("no_such_kernel").unwrap_err().to_string();
    assert!(err.contains("cuModuleGetFunction"), "{err}");
    assert!(Module::load(&rt, b"not a cubin").is_err());
}

#[test]
fn hip_without_amd_gpu_is_a_clean_error() {
    match HipRuntime::new(0) {
        Ok(rt) => eprintln!("skipped: an AMD GPU is present ({})", rt.info()),
        Err(RuntimeError::LibraryMissing(msg)) => {
            assert!(msg.contains("libamdhip64"), "{msg}");
            eprintln!("HIP library absent: {msg}");
        }
        Err(RuntimeError::NoDevice(msg)) => {
            assert!(msg.starts_with("no AMD GPU found"), "{msg}");
            eprintln!("HIP without GPU: {msg}");
        }
        Err(e) => panic!("expected a clean no-library/no-device error, got: {e}"),
    }
}

#[test]
fn cuda_without_driver_is_a_clean_error() {
    if rocmforge::backend::cuda::driver_present() {
        eprintln!("skipped: an NVIDIA driver is present");
        return;
    }
    let err = CudaRuntime::new(0).err().expect("no driver, no runtime");
    assert_eq!(err.to_string(), "no NVIDIA driver (libcuda.so) found");
}

#[test]
fn device_selection_names_what_is_missing() {
    use rocmforge::backend::gpu::{select_device, SelectedDevice};
    let hip = HipRuntime::new(0);
    let cuda = CudaRuntime::new(0);
    match (&hip, &cuda) {
        (Err(_), Err(_)) => {
            assert!(matches!(select_device("auto"), Ok(SelectedDevice::Cpu)));
            let err = select_device("cuda:0")
                .err()
                .expect("no CUDA here")
                .to_string();
            assert!(err.starts_with("device 'cuda:0': "), "{err}");
            let err = select_device("hip").err().expect("no HIP here").to_string();
            assert!(err.starts_with("device 'hip': "), "{err}");
        }
        _ => {
            let chosen = select_device("auto").unwrap();
            assert!(matches!(chosen, SelectedDevice::Gpu(_)), "a GPU is present");
            let want = if hip.is_ok() { "hip:0" } else { "cuda:0" };
            assert!(chosen.describe().starts_with(want), "{}", chosen.describe());
        }
    }
    assert!(matches!(select_device("cpu"), Ok(SelectedDevice::Cpu)));
    assert!(select_device("cuda:99").is_err());
}
