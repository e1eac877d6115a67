//! Tollgate as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`,
//! Envoy 1.40): the same stages as the wasm filter, native. The listener's
//! filter (any `filter_name` but `attempt`) runs the request stage on the
//! single-stage chain [tollgate, router]; `filter_name: attempt`, an
//! upstream filter of a fallback chain's or key pool's cluster, runs the
//! attempt stage with the request stage's state. Built with
//! `--no-default-features --features dynamic-module` as `libtollgate.so`
//! (the Makefile's `native` profile).
//!
//! What differs from the wasm build: one state for the whole Envoy
//! (`Shared`, behind mutexes) instead of one per worker VM; the background
//! batches (usage reports, spans, lease refills, key refreshes) are sent
//! from Envoy's main thread, ticked by a timer thread through the
//! configuration's scheduler, since only the main thread can start a
//! callout that outlives a stream; shared data is a map in this process;
//! the stages hand each other their records in the stream's dynamic
//! metadata; Envoy stats are defined as families when the configuration
//! loads (`metrics.rs`).

mod abi;
mod host;
mod metrics;

use super::attempt_stage::AttemptStage;
use super::context::{Action, HttpContext};
use super::env::Host;
use super::request_stage::RequestStage;
use super::shared::Shared;
use super::sidecar::SidecarClient;
use crate::core::api::ClientFormat;
use crate::core::config::Config;
use crate::core::error::GatewayError;
use abi::{Buffer, ConfigModulePtr, ConfigPtr, FilterModulePtr, FilterPtr, Header, SchedulerPtr};
use host::{token, Answer, Main, Stream};
use metrics::Metrics;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Small blocks from per-thread lists: Envoy's allocator cost far more per
/// allocation, and a request makes about a hundred.
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: crate::filter::size_classes::threads::ThreadCache =
    crate::filter::size_classes::threads::ThreadCache;

/// How often the background work runs, as the wasm root context's tick.
const TICK: Duration = Duration::from_millis(100);

/// A configuration of the module: the request stage (the listener's filter),
/// or the attempt stage (`filter_name: attempt`, an upstream filter of a
/// fallback chain's cluster), which uses the request stage's state.
enum Module {
    /// The shared state and the timer that ticks it.
    Request {
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        ticker: Option<Ticker>,
    },
    Attempt,
}

/// The request stage's state, for the attempt stages: the one configured
/// last (clusters, and so attempt stages, load before listeners).
static REQUEST_STAGE: Mutex<Option<(Arc<Shared>, Arc<Metrics>)>> = Mutex::new(None);

fn request_stage() -> Option<(Arc<Shared>, Arc<Metrics>)> {
    REQUEST_STAGE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// A thread that asks the main thread for a tick every `TICK`.
struct Ticker {
    scheduler: Scheduler,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Envoy's scheduler handle: its `commit` is meant to be called from any
/// thread.
#[derive(Clone, Copy)]
struct Scheduler(SchedulerPtr);

// SAFETY: Envoy's configuration scheduler is thread-safe by contract (it
// posts to the main thread's dispatcher); the handle lives until
// `Ticker::stop` deletes it after the thread has ended.
unsafe impl Send for Scheduler {}

impl Ticker {
    fn start(config: ConfigPtr) -> Option<Ticker> {
        // SAFETY: the configuration pointer of the running hook.
        let scheduler = Scheduler(unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config)
        });
        if scheduler.0.is_null() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tollgate-tick".into())
            .spawn(move || {
                let scheduler = scheduler;
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    // SAFETY: deleted only after this thread is joined.
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            scheduler.0,
                            0,
                        )
                    };
                }
            })
            .ok();
        Some(Ticker {
            scheduler,
            stop,
            thread,
        })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // SAFETY: made by scheduler_new; no thread commits to it any more.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.scheduler.0)
        };
    }
}

/// Loads a configuration; the error is what Envoy's log shows.
fn configure(config_ptr: ConfigPtr, name: &[u8], bytes: &[u8]) -> Result<Module, String> {
    if name == b"attempt" {
        return Ok(Module::Attempt);
    }
    let (config, guardrails) = Config::load(bytes)?;
    let sidecar = SidecarClient::from_env(config.sidecar.clone())
        .map_err(|e| format!("invalid tollgate configuration:\n  - {e}"))?;
    log::info!(
        "tollgate: dynamic module configured {} providers, {} model routes, sidecar {}",
        config.providers.len(),
        config.models.len(),
        config.sidecar.cluster
    );
    let providers: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    let metrics = Arc::new(Metrics::define_all(config_ptr, &providers));
    let main = Main::new(config_ptr, Arc::clone(&metrics));
    let seed = RandomState::new().build_hasher().finish();
    let shared = Arc::new(Shared::new(
        &main,
        config,
        guardrails,
        Arc::new(sidecar),
        None,
        seed,
    ));
    *REQUEST_STAGE.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((Arc::clone(&shared), Arc::clone(&metrics)));
    Ok(Module::Request {
        shared,
        metrics,
        ticker: Ticker::start(config_ptr),
    })
}

/// One stream's stage over this stream's host. (The `Filter` holding it is
/// boxed whole: boxing the larger variant too would cost an allocation a
/// request.)
#[allow(clippy::large_enum_variant)]
enum Stage {
    Request(RequestStage<Stream>),
    Attempt(AttemptStage<Stream>),
}

impl Stage {
    fn http(&mut self) -> &mut dyn HttpContext {
        match self {
            Stage::Request(s) => s,
            Stage::Attempt(s) => s,
        }
    }

    fn host(&self) -> &Stream {
        match self {
            Stage::Request(s) => s.host(),
            Stage::Attempt(s) => s.host(),
        }
    }
}

struct Filter {
    stage: Stage,
    /// A callback panicked: the stream was answered with a 500 and the
    /// stage is left alone from then on.
    broken: bool,
}

/// Runs a main-thread hook's work, logging a panic (a bug) instead of
/// unwinding into Envoy.
fn caught<T>(hook: &str, failed: T, work: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        log::error!("tollgate: {hook} failed (a panic, a bug)");
        failed
    })
}

/// Runs a stream hook's work. A panic is a bug: in wasm it would stop the
/// VM; natively it must not unwind into Envoy, so it is caught, the
/// request is answered with a 500 and `failed` is what the hook returns.
fn guarded<T>(
    filter: FilterPtr,
    module: FilterModulePtr,
    failed: T,
    work: impl FnOnce(&mut Filter) -> T,
) -> T {
    // SAFETY: the filter Envoy made with filter_new.
    let Some(f) = (unsafe { borrow::<Filter>(module) }) else {
        return failed;
    };
    if f.broken {
        return failed;
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| work(f))) {
        Ok(out) => out,
        Err(_) => {
            log::error!(
                "tollgate: the filter failed on a request (a panic, a bug); answered it with 500"
            );
            // SAFETY: as above; the closure's borrow ended with it.
            if let Some(f) = unsafe { borrow::<Filter>(module) } {
                f.broken = true;
            }
            let error = GatewayError::Internal("the gateway filter failed on this request");
            let host = Stream::new(filter, None);
            host.send_json(error.status(), &error.body(ClientFormat::OpenAi), None);
            if let Some((filter, reply)) = host.finish() {
                reply.send(filter);
            }
            failed
        }
    }
}

/// # Safety
/// `ptr` is null or was made by `Box::into_raw` of a `T` still alive.
unsafe fn borrow<'a, T>(ptr: *const std::ffi::c_void) -> Option<&'a mut T> {
    // SAFETY: per this function's contract; Envoy calls a filter's or a
    // configuration's hooks one at a time.
    unsafe { (ptr as *mut T).as_mut() }
}

/// After a request-side stage callback: sends the local reply it asked
/// for, with no borrow of the filter left (Envoy runs this filter's response
/// hooks inside the send), or picks the route again if it changed.
fn finish(module: FilterModulePtr) {
    // SAFETY: the filter Envoy made with filter_new; the borrow ends here.
    let pending = unsafe { borrow::<Filter>(module) }.and_then(|f| f.stage.host().finish());
    if let Some((filter, reply)) = pending {
        reply.send(filter);
    }
}

fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => abi::HEADERS_CONTINUE,
        _ => abi::HEADERS_STOP_ITERATION,
    }
}

fn body_status(action: Action) -> u32 {
    match action {
        Action::Continue => abi::BODY_CONTINUE,
        _ => abi::BODY_STOP_ITERATION_AND_BUFFER,
    }
}

fn trailers_status(action: Action) -> u32 {
    match action {
        Action::Continue => abi::TRAILERS_CONTINUE,
        _ => abi::TRAILERS_STOP_ITERATION,
    }
}

// ---- module and configuration hooks (main thread)

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    logger::install();
    abi::ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_ptr: ConfigPtr,
    name: Buffer,
    config: Buffer,
) -> ConfigModulePtr {
    // SAFETY: Envoy's name and configuration bytes, valid during this hook.
    let (name, bytes) = unsafe { (name.bytes(), config.bytes()) };
    let configured = caught("loading the configuration", Err(String::new()), || {
        configure(config_ptr, name, bytes)
    });
    match configured {
        Ok(module) => Box::into_raw(Box::new(module)) as ConfigModulePtr,
        Err(e) => {
            // Envoy refuses the configuration (and does not start).
            log::error!("tollgate: {e}");
            std::ptr::null()
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(module: ConfigModulePtr) {
    if module.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in config_new; Envoy destroys it once.
    let module = unsafe { Box::from_raw(module as *mut Module) };
    if let Module::Request { shared, ticker, .. } = *module {
        if let Some(ticker) = ticker {
            ticker.stop();
        }
        caught(
            "handing over a replaced configuration's reports",
            (),
            || hand_over(&shared),
        );
    }
}

/// A destroyed configuration (a listener update replaced it, or it was
/// removed) can make no more calls: the request stage configured after it
/// sends what it had not sent yet.
fn hand_over(shared: &Arc<Shared>) {
    let mut slot = REQUEST_STAGE.lock().unwrap_or_else(|p| p.into_inner());
    let successor = match &*slot {
        Some((current, _)) if Arc::ptr_eq(current, shared) => {
            // Removed, not replaced: attempt stages no longer find it.
            *slot = None;
            None
        }
        other => other.as_ref().map(|(current, _)| Arc::clone(current)),
    };
    drop(slot);
    let handed = successor.is_some_and(|s| shared.hand_over(&s));
    let unsent = shared.reports_pending();
    if !handed && unsent > 0 {
        log::error!("tollgate: {unsent} usage reports of a removed configuration were not sent");
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_ptr: ConfigPtr,
    module: ConfigModulePtr,
    _event: u64,
) {
    // SAFETY: the configuration Envoy made with config_new.
    if let Some(Module::Request {
        shared, metrics, ..
    }) = unsafe { borrow::<Module>(module) }
    {
        caught("the background tick", (), || {
            logger::follow_envoy();
            shared.tick(&Main::new(config_ptr, Arc::clone(metrics)));
        });
    }
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_ptr: ConfigPtr,
    module: ConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const Header,
    headers_size: usize,
    chunks: *const Buffer,
    chunks_size: usize,
) {
    // SAFETY: the configuration Envoy made with config_new.
    let Some(Module::Request {
        shared, metrics, ..
    }) = (unsafe { borrow::<Module>(module) })
    else {
        return;
    };
    let main = Main::new(config_ptr, Arc::clone(metrics));
    // SAFETY: Envoy's views, valid during this hook.
    let answer = unsafe {
        Answer::read(
            result == abi::CALLOUT_ANSWERED,
            headers,
            headers_size,
            chunks,
            chunks_size,
        )
    };
    let (status, size) = (answer.status.clone(), answer.body.len());
    *main.answer.borrow_mut() = answer;
    caught("a background answer", (), || {
        shared.answered(&main, token(callout_id), status, size)
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: Buffer,
    _config: Buffer,
) -> ConfigModulePtr {
    log::error!("tollgate: per-route configuration is not supported");
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: ConfigModulePtr,
) {
}

// ---- stream hooks (the stream's worker thread)

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    module: ConfigModulePtr,
    filter: FilterPtr,
) -> FilterModulePtr {
    // SAFETY: the configuration Envoy made with config_new.
    let stage = match unsafe { borrow::<Module>(module) } {
        Some(Module::Request {
            shared, metrics, ..
        }) => {
            shared.count_request();
            let host = Stream::new(filter, Some(Arc::clone(metrics)));
            Stage::Request(RequestStage::new(Arc::clone(shared), host))
        }
        Some(Module::Attempt) => {
            let (shared, metrics) = request_stage().unzip();
            Stage::Attempt(AttemptStage::new(shared, Stream::new(filter, metrics)))
        }
        None => return std::ptr::null_mut(),
    };
    Box::into_raw(Box::new(Filter {
        stage,
        broken: false,
    })) as FilterModulePtr
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: FilterModulePtr) {
    if !module.is_null() {
        // SAFETY: made by Box::into_raw in filter_new; Envoy destroys it once.
        drop(unsafe { Box::from_raw(module as *mut Filter) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: FilterPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let status = guarded(filter, module, abi::HEADERS_STOP_ITERATION, |f| {
        headers_status(f.stage.http().on_http_request_headers(0, end_of_stream))
    });
    finish(module);
    status
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter: FilterPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let status = guarded(filter, module, abi::BODY_STOP_ITERATION_AND_BUFFER, |f| {
        let size = f.stage.host().request_body_size();
        body_status(f.stage.http().on_http_request_body(size, end_of_stream))
    });
    finish(module);
    status
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter: FilterPtr,
    module: FilterModulePtr,
) -> u32 {
    let status = guarded(filter, module, abi::TRAILERS_STOP_ITERATION, |f| {
        trailers_status(f.stage.http().on_http_request_trailers(0))
    });
    finish(module);
    status
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter: FilterPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    guarded(filter, module, abi::HEADERS_CONTINUE, |f| {
        headers_status(f.stage.http().on_http_response_headers(0, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter: FilterPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    guarded(filter, module, abi::BODY_CONTINUE, |f| {
        let size = f.stage.host().response_body_size();
        body_status(f.stage.http().on_http_response_body(size, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter: FilterPtr,
    module: FilterModulePtr,
) -> u32 {
    guarded(filter, module, abi::TRAILERS_CONTINUE, |f| {
        trailers_status(f.stage.http().on_http_response_trailers(0))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter: FilterPtr,
    module: FilterModulePtr,
) {
    guarded(filter, module, (), |f| f.stage.http().on_log());
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter: FilterPtr,
    module: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const Header,
    headers_size: usize,
    chunks: *const Buffer,
    chunks_size: usize,
) {
    // SAFETY: Envoy's views, valid during this hook.
    let answer = unsafe {
        Answer::read(
            result == abi::CALLOUT_ANSWERED,
            headers,
            headers_size,
            chunks,
            chunks_size,
        )
    };
    guarded(filter, module, (), |f| {
        let size = answer.body.len();
        *f.stage.host().answer.borrow_mut() = answer;
        f.stage
            .http()
            .on_http_call_response(token(callout_id), 0, size, 0);
    });
    finish(module);
}

// ---- hooks Envoy requires for features this module does not use:
// streamed callouts, per-stream scheduling, downstream watermarks.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _stream: u64,
    _headers: *const Header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _stream: u64,
    _data: *const Buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _stream: u64,
    _trailers: *const Header,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _stream: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _stream: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter: FilterPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter: FilterPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter: FilterPtr,
    _module: FilterModulePtr,
    _status: u32,
    _details: Buffer,
    _reset_imminent: bool,
) -> u32 {
    0
}

/// `log` records into Envoy's log (its `dynamic_modules` logger).
mod logger {
    use super::abi;

    struct EnvoyLog;

    static LOGGER: EnvoyLog = EnvoyLog;

    fn level(level: log::Level) -> u32 {
        match level {
            log::Level::Error => abi::LOG_ERROR,
            log::Level::Warn => abi::LOG_WARN,
            log::Level::Info => abi::LOG_INFO,
            log::Level::Debug | log::Level::Trace => abi::LOG_DEBUG,
        }
    }

    impl log::Log for EnvoyLog {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            // SAFETY: no pointers.
            unsafe { abi::envoy_dynamic_module_callback_log_enabled(level(metadata.level())) }
        }

        fn log(&self, record: &log::Record) {
            let message = record.args().to_string();
            // SAFETY: the message lives through the call; Envoy copies it.
            unsafe {
                abi::envoy_dynamic_module_callback_log(
                    level(record.level()),
                    abi::Buffer::of(message.as_bytes()),
                )
            };
        }

        fn flush(&self) {}
    }

    pub fn install() {
        let _ = log::set_logger(&LOGGER);
        follow_envoy();
    }

    /// Formats only what Envoy's log level will print (it can change at
    /// runtime, through the admin interface).
    pub fn follow_envoy() {
        // SAFETY: no pointers.
        let enabled = |l| unsafe { abi::envoy_dynamic_module_callback_log_enabled(l) };
        log::set_max_level(if enabled(abi::LOG_DEBUG) {
            log::LevelFilter::Debug
        } else if enabled(abi::LOG_INFO) {
            log::LevelFilter::Info
        } else if enabled(abi::LOG_WARN) {
            log::LevelFilter::Warn
        } else {
            log::LevelFilter::Error
        });
    }
}
