package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPUSeconds is the user and system CPU time the processes have used, from
// /proc/<pid>/stat; -1 when one cannot be read. It measures servers that have no
// /metrics (Centrifugo's is off by default, the bare hub has none) the same way as
// Parley.
func procCPUSeconds(pids []int) float64 {
	total, _ := procCPUTimes(pids)
	return total
}

// procCPUTimes is procCPUSeconds and, of it, the system (kernel) time; both -1 when
// one cannot be read. The split tells socket and disk work (the kernel's) from the
// server's own.
func procCPUTimes(pids []int) (total, system float64) {
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1, -1
		}
		// The command name (field 2) is in parentheses and may hold spaces: the fields
		// after the last ')' are 3, 4, …; utime and stime are fields 14 and 15.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			return -1, -1
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 13 {
			return -1, -1
		}
		ut, err1 := strconv.ParseFloat(string(f[11]), 64)
		st, err2 := strconv.ParseFloat(string(f[12]), 64)
		if err1 != nil || err2 != nil {
			return -1, -1
		}
		total += (ut + st) / clockTicks
		system += st / clockTicks
	}
	return total, system
}

// procRSS is the processes' resident memory in bytes, from /proc/<pid>/status.
func procRSS(pids []int) (float64, error) {
	var total float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, err
		}
		i := bytes.Index(b, []byte("\nVmRSS:"))
		if i < 0 {
			return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
		}
		f := bytes.Fields(b[i+len("\nVmRSS:"):])
		if len(f) < 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: unexpected VmRSS", pid)
		}
		kb, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			return 0, err
		}
		total += kb * 1024
	}
	return total, nil
}

// machineIdleSeconds is how long the machine's CPUs have been idle since boot, all
// of them together, in seconds (idle and iowait of /proc/stat's "cpu" line); -1 when
// it cannot be read. Over a run it says how much of the machine neither the server
// nor the generator (nor anything else) used: a closed loop that leaves cores idle is
// held back by waiting, not by what a message costs.
func machineIdleSeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	return statIdleSeconds(b)
}

// statIdleSeconds reads the idle and iowait times of the "cpu" line of /proc/stat's
// text b; -1 when it has none.
func statIdleSeconds(b []byte) float64 {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return -1
	}
	idle, err1 := strconv.ParseFloat(string(f[4]), 64)
	iowait, err2 := strconv.ParseFloat(string(f[5]), 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (idle + iowait) / clockTicks
}
