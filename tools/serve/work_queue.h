// A fixed set of worker threads fed by a bounded queue, with a deadline per job
// (`sam3 serve`: --workers, --queue, --timeout).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace sam3::serve {

class WorkQueue {
 public:
  WorkQueue(int workers, std::size_t max_waiting);
  ~WorkQueue();  // stop(), then joins: running jobs finish, waiting ones are dropped
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  enum class Status { Done, Full, TimedOut, Stopped };
  // Runs `job` on a worker and waits for it. Full: `max_waiting` jobs already wait for a
  // worker (nothing is queued). TimedOut: not finished within `timeout`; a job still
  // waiting is dropped, a running one finishes unobserved (its captures must own what
  // it writes). An exception thrown by `job` is rethrown here.
  Status run(std::function<void()> job, std::chrono::milliseconds timeout);
  // Queues `job` without waiting for it: Done (accepted), Full or Stopped. The job must
  // catch its own exceptions; a stop drops it if it has not started.
  Status submit(std::function<void()> job);
  void stop();

  std::size_t waiting() const;
  int busy() const;

 private:
  struct Job;
  Status enqueue(const std::shared_ptr<Job>& job);  // Done (queued), Full or Stopped
  void work();
  const std::size_t max_waiting_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::thread> threads_;
  int busy_ = 0;
  bool stopped_ = false;
};

}  // namespace sam3::serve
