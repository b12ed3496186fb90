//! A runtime that keeps "device" memory on the host and records launches instead of running
//! them, and a kernel table that hands out one fake function per step and role: enough to check
//! the executor's memory handling, inputs, chunking and graph use without a GPU.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Mutex;

use rocmforge::backend::gpu::runtime::{EventHandle, FunctionHandle, GraphHandle, ModuleHandle};
use rocmforge::backend::gpu::{
    DeviceInfo, DevicePtr, GemmF16, GpuError, GpuPlatform, GpuRuntime, KernelLaunch, KernelRole,
    KernelTable, LaunchDims, MemInfo, RuntimeError, StepSite,
};

/// What the fake saw, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    Launch {
        function: FunctionHandle,
        dims: LaunchDims,
        args: Vec<u64>,
    },
    CopyDtoD {
        dst: DevicePtr,
        src: DevicePtr,
        bytes: usize,
    },
    GraphLaunch(u64),
    Gemm(GemmF16),
}

#[derive(Default)]
struct State {
    memory: BTreeMap<DevicePtr, Vec<u8>>,
    next: DevicePtr,
    capturing: Option<Vec<Recorded>>,
    graphs: Vec<Vec<Recorded>>,
    log: Vec<Recorded>,
    captures: usize,
}

pub struct FakeRuntime {
    info: DeviceInfo,
    free: usize,
    state: Mutex<State>,
    functions: Mutex<Vec<String>>,
}

impl FakeRuntime {
    pub fn new(free: usize) -> Self {
        Self {
            info: DeviceInfo {
                platform: GpuPlatform::Cuda,
                ordinal: 0,
                name: "fake".to_string(),
                arch: "sm_90".to_string(),
                total_memory: free,
                multiprocessor_count: 1,
                l2_cache_bytes: 1 << 20,
                warp_size: 32,
                max_shared_per_block: 48 << 10,
                driver_version: "0".to_string(),
            },
            free,
            state: Mutex::new(State {
                next: 0x1000_0000,
                ..State::default()
            }),
            functions: Mutex::new(Vec::new()),
        }
    }

    /// A fake of a device of another architecture (what kernels get compiled for).
    pub fn with_arch(free: usize, arch: &str, warp_size: u32) -> Self {
        let mut fake = Self::new(free);
        fake.info.arch = arch.to_string();
        fake.info.warp_size = warp_size;
        fake
    }

    /// The entry point name a function handle was looked up by.
    pub fn function_name(&self, function: FunctionHandle) -> String {
        self.functions.lock().unwrap()[function.0 as usize].clone()
    }

    /// Bytes of fake device memory at `addr`.
    pub fn read(&self, addr: DevicePtr, len: usize) -> Vec<u8> {
        let state = self.state.lock().unwrap();
        let (base, mem) = state
            .memory
            .range(..=addr)
            .next_back()
            .expect("address allocated");
        let off = (addr - base) as usize;
        mem[off..off + len].to_vec()
    }

    pub fn read_i32(&self, addr: DevicePtr, n: usize) -> Vec<i32> {
        self.read(addr, n * 4)
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Everything run so far (graph replays appear as one entry each).
    pub fn log(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn captures(&self) -> usize {
        self.state.lock().unwrap().captures
    }

    pub fn graph(&self, index: u64) -> Vec<Recorded> {
        self.state.lock().unwrap().graphs[index as usize].clone()
    }

    fn with_range<R>(
        &self,
        addr: DevicePtr,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, RuntimeError> {
        let mut state = self.state.lock().unwrap();
        let bad = || RuntimeError::InvalidArgument {
            call: "fake",
            reason: format!("{len} bytes at {addr:#x} outside every allocation"),
        };
        let (base, mem) = state
            .memory
            .range_mut(..=addr)
            .next_back()
            .ok_or_else(bad)?;
        let off = (addr - *base) as usize;
        if off + len > mem.len() {
            return Err(bad());
        }
        Ok(f(&mut mem[off..off + len]))
    }

    fn record(&self, item: Recorded) {
        let mut state = self.state.lock().unwrap();
        match &mut state.capturing {
            Some(list) => list.push(item),
            None => state.log.push(item),
        }
    }
}

impl GpuRuntime for FakeRuntime {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn gemm_f16_library(&self) -> Option<&'static str> {
        Some("fake GEMM")
    }
    unsafe fn gemm_f16(&self, g: &GemmF16) -> Result<(), RuntimeError> {
        self.record(Recorded::Gemm(*g));
        Ok(())
    }
    fn mem_info(&self) -> Result<MemInfo, RuntimeError> {
        Ok(MemInfo {
            free: self.free,
            total: self.free,
        })
    }
    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RuntimeError> {
        let mut state = self.state.lock().unwrap();
        let addr = state.next;
        state.next += bytes.div_ceil(256) as u64 * 256 + 256;
        state.memory.insert(addr, vec![0xAB; bytes]);
        Ok(addr)
    }
    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), RuntimeError> {
        self.state.lock().unwrap().memory.remove(&ptr);
        Ok(())
    }
    unsafe fn copy_htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RuntimeError> {
        self.with_range(dst, src.len(), |m| m.copy_from_slice(src))
    }
    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), RuntimeError> {
        self.with_range(src, dst.len(), |m| dst.copy_from_slice(m))
    }
    unsafe fn copy_dtod(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        bytes: usize,
    ) -> Result<(), RuntimeError> {
        self.record(Recorded::CopyDtoD { dst, src, bytes });
        Ok(())
    }
    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<(), RuntimeError> {
        self.with_range(dst, bytes, |m| m.fill(0))
    }
    fn load_module(&self, _image: &[u8]) -> Result<ModuleHandle, RuntimeError> {
        Ok(ModuleHandle(1))
    }
    unsafe fn unload_module(&self, _module: ModuleHandle) -> Result<(), RuntimeError> {
        Ok(())
    }
    unsafe fn get_function(
        &self,
        _m: ModuleHandle,
        name: &str,
    ) -> Result<FunctionHandle, RuntimeError> {
        let mut functions = self.functions.lock().unwrap();
        functions.push(name.to_string());
        Ok(FunctionHandle(functions.len() as u64 - 1))
    }
    unsafe fn set_max_dynamic_shared(
        &self,
        _f: FunctionHandle,
        _bytes: u32,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    unsafe fn launch(
        &self,
        function: FunctionHandle,
        dims: &LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), RuntimeError> {
        // The executor passes every parameter in an 8-byte slot, so reading 8 bytes is in bounds.
        let args = args.iter().map(|&p| *(p as *const u64)).collect();
        self.record(Recorded::Launch {
            function,
            dims: *dims,
            args,
        });
        Ok(())
    }
    fn synchronize(&self) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn event_create(&self) -> Result<EventHandle, RuntimeError> {
        Ok(EventHandle(1))
    }
    unsafe fn event_record(&self, _e: EventHandle) -> Result<(), RuntimeError> {
        Ok(())
    }
    unsafe fn event_elapsed_ms(
        &self,
        _s: EventHandle,
        _e: EventHandle,
    ) -> Result<f32, RuntimeError> {
        Ok(0.0)
    }
    unsafe fn event_destroy(&self, _e: EventHandle) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn begin_capture(&self) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().unwrap();
        assert!(state.capturing.is_none(), "nested capture");
        state.capturing = Some(Vec::new());
        Ok(())
    }
    fn end_capture(&self) -> Result<GraphHandle, RuntimeError> {
        let mut state = self.state.lock().unwrap();
        let list = state.capturing.take().expect("capture in progress");
        state.graphs.push(list);
        state.captures += 1;
        let index = state.graphs.len() as u64 - 1;
        Ok(GraphHandle {
            graph: index,
            exec: index,
        })
    }
    unsafe fn graph_launch(&self, graph: GraphHandle) -> Result<(), RuntimeError> {
        self.record(Recorded::GraphLaunch(graph.exec));
        Ok(())
    }
    unsafe fn graph_destroy(&self, _g: GraphHandle) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// One distinct fake function per (step site, role); grid = (n_tokens, 1, 1).
pub struct FakeKernels;

impl FakeKernels {
    pub fn function_for(site: StepSite, role: KernelRole) -> FunctionHandle {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (site, role).hash(&mut h);
        FunctionHandle(h.finish())
    }
}

impl KernelTable for FakeKernels {
    fn kernel(
        &self,
        site: StepSite,
        role: KernelRole,
        n_tokens: usize,
    ) -> Result<KernelLaunch, GpuError> {
        Ok(KernelLaunch {
            function: Self::function_for(site, role),
            dims: LaunchDims {
                grid: (n_tokens as u32, 1, 1),
                block: (32, 1, 1),
                shared_bytes: 0,
                // As rendered kernels: the executor decides where that is used.
                dependent: true,
            },
        })
    }
}

/// A table that has no kernel for one role, to check that the error surfaces.
pub struct MissingKernels(pub KernelRole);

impl KernelTable for MissingKernels {
    fn kernel(
        &self,
        site: StepSite,
        role: KernelRole,
        n_tokens: usize,
    ) -> Result<KernelLaunch, GpuError> {
        if role == self.0 {
            return Err(GpuError::MissingKernel {
                step: format!("{site:?}"),
                role: role.name(),
                n_tokens,
                what: "not built".to_string(),
            });
        }
        FakeKernels.kernel(site, role, n_tokens)
    }
}
