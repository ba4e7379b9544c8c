#include "work_queue.h"

#include <exception>

namespace sam3::serve {

struct WorkQueue::Job {
  std::function<void()> fn;
  std::mutex mu;
  std::condition_variable done_cv;
  bool started = false, done = false, cancelled = false;
  std::exception_ptr error;
};

WorkQueue::WorkQueue(int workers, std::size_t max_waiting) : max_waiting_(max_waiting) {
  for (int i = 0; i < std::max(1, workers); ++i) threads_.emplace_back([this] { work(); });
}

WorkQueue::~WorkQueue() {
  stop();
  for (auto& t : threads_) t.join();
}

void WorkQueue::stop() {
  std::deque<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (auto& j : dropped) {
    std::lock_guard<std::mutex> lock(j->mu);
    j->cancelled = true;
    j->done_cv.notify_all();
  }
}

std::size_t WorkQueue::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

int WorkQueue::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_;
}

WorkQueue::Status WorkQueue::enqueue(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return Status::Stopped;
    // an idle worker takes the job at once; beyond those, max_waiting_ may wait
    const std::size_t idle = threads_.size() - static_cast<std::size_t>(busy_);
    if (queue_.size() >= max_waiting_ + idle) return Status::Full;
    queue_.push_back(job);
  }
  cv_.notify_one();
  return Status::Done;
}

WorkQueue::Status WorkQueue::run(std::function<void()> fn, std::chrono::milliseconds timeout) {
  auto job = std::make_shared<Job>();
  job->fn = std::move(fn);
  const Status queued = enqueue(job);
  if (queued != Status::Done) return queued;
  std::unique_lock<std::mutex> lock(job->mu);
  if (!job->done_cv.wait_for(lock, timeout, [&] { return job->done || job->cancelled; })) {
    job->cancelled = true;  // a worker that has not started it skips it
    return Status::TimedOut;
  }
  if (!job->done) return Status::Stopped;
  if (job->error) std::rethrow_exception(job->error);
  return Status::Done;
}

WorkQueue::Status WorkQueue::submit(std::function<void()> fn) {
  auto job = std::make_shared<Job>();
  job->fn = std::move(fn);
  return enqueue(job);
}

void WorkQueue::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopped_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopped
      job = queue_.front();
      queue_.pop_front();
      ++busy_;
    }
    bool run = false;
    {
      std::lock_guard<std::mutex> lock(job->mu);
      if (!job->cancelled) run = job->started = true;
    }
    std::exception_ptr error;
    if (run) {
      try {
        job->fn();
      } catch (...) {
        error = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(job->mu);
      job->done = run;
      job->error = error;
      job->done_cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    --busy_;
  }
}

}  // namespace sam3::serve
