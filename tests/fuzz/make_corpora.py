#!/usr/bin/env python3
"""Writes the hand-made seed corpora of the fuzz targets into tests/fuzz/<name>-corpus/.

Each seed is a well-formed run of its target's input format (see the comments at the
top of each *_fuzz.cpp): a blk request, a net frame each way, a vsock connection, a
valid config, a loadable kernel. The fuzzer mutates from there. Run again after
changing an input format; the files are committed.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(corpus, name, data):
    path = os.path.join(HERE, corpus)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- mmio_transport_fuzz: [device] then operations (opcode byte % 15) ----------------
DATA_BASE = 0x80000
BLK_IO_URING, BLK_SYNC, NET, VSOCK = 0, 1, 2, 3


class Mmio:
    def __init__(self, device):
        self.b = bytearray([device])

    def op(self, code, payload=b""):
        self.b += bytes([code]) + payload
        return self

    def negotiate(self):  # every offered feature
        return self.op(3, struct.pack("<Q", 0xFFFFFFFFFFFFFFFF))

    def queue(self, q, size_exp=4):
        return self.op(4, bytes([q, size_exp]))

    def driver_ok(self):
        return self.op(6).run()

    def run(self, times=1):
        for _ in range(times):
            self.op(11)
        return self

    def memory(self, gpa, data):
        assert len(data) < 256
        return self.op(8, struct.pack("<IB", gpa, len(data)) + data)

    def chain(self, q, readable, writable, indirect=False):
        shape = len(readable) | len(writable) << 2 | (0x10 if indirect else 0)
        bufs = b"".join(struct.pack("<HH", (gpa - DATA_BASE) // 8, n) for gpa, n in readable + writable)
        return self.op(7, bytes([q, shape]) + bufs)

    def notify(self, q):
        return self.op(10, bytes([q]))

    def host(self, payload):
        return self.op(12, payload)

    def start(self, queues):
        self.negotiate()
        for q in range(queues):
            self.queue(q)
        return self.driver_ok()


def blk_request(device, req_type, sector, data_len, indirect=False, writing=False):
    m = Mmio(device).start(1)
    m.memory(DATA_BASE, struct.pack("<IIQ", req_type, 0, sector))
    header, data, status = (DATA_BASE, 16), (DATA_BASE + 0x100, data_len), (DATA_BASE + 0x2000, 1)
    if writing:
        m.memory(data[0], bytes(range(64)))
        m.chain(0, [header, data], [status], indirect)
    else:
        m.chain(0, [header], [data, status] if data_len else [status], indirect)
    return bytes(m.notify(0).run(3).b)


for device, engine in ((BLK_IO_URING, "uring"), (BLK_SYNC, "sync")):
    write("mmio-transport-corpus", f"blk-{engine}-read", blk_request(device, 0, 0, 512))
    write("mmio-transport-corpus", f"blk-{engine}-write", blk_request(device, 1, 8, 512, writing=True))
    write("mmio-transport-corpus", f"blk-{engine}-flush", blk_request(device, 4, 0, 0))
    write("mmio-transport-corpus", f"blk-{engine}-get-id-indirect", blk_request(device, 8, 0, 20, indirect=True))

net_header = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 0)
frame = net_header + bytes([0xFF] * 6 + [6, 0, 0, 0, 0, 1] + [8, 0]) + bytes(46)
m = Mmio(NET).start(2)
m.chain(0, [], [(DATA_BASE + 0x1000, 2048)]).notify(0).run()
m.host(b"\x01" + struct.pack("<H", len(frame)) + frame).run(3)
m.memory(DATA_BASE + 0x10000, frame).chain(1, [(DATA_BASE + 0x10000, len(frame))], []).notify(1).run(3)
m.host(b"\x00")
write("mmio-transport-corpus", "net-rx-tx", bytes(m.b))


def vsock_header(op, src_port, dst_port, length=0, flags=0):
    return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, length, 1, op, flags, 65536, 0)


m = Mmio(VSOCK).start(3)
for i in range(4):
    m.chain(0, [], [(DATA_BASE + 0x1000 * (i + 1), 300)])
m.notify(0).run()
m.memory(DATA_BASE + 0x10000, vsock_header(1, 5000, 1024))  # REQUEST to the host's port 1024
m.chain(1, [(DATA_BASE + 0x10000, 44)], []).notify(1).run(2)
m.host(b"\x01\x00").run()  # the host process accepts
m.memory(DATA_BASE + 0x10100, vsock_header(5, 5000, 1024, 5) + b"hello")
m.chain(1, [(DATA_BASE + 0x10100, 44), (DATA_BASE + 0x10100 + 44, 5)], []).notify(1).run(2)
m.host(b"\x02\x00\x05world").run(2)
m.host(b"\x00\x00").host(b"\x02\x01\x0dCONNECT 5000\n").run(2)
m.memory(DATA_BASE + 0x10200, vsock_header(4, 5000, 1024, 0, 3))  # SHUTDOWN both
m.chain(1, [(DATA_BASE + 0x10200, 44)], []).notify(1).run(2)
write("mmio-transport-corpus", "vsock-connection", bytes(m.b))

# A driver that puts its rings outside guest memory, then resets.
m = Mmio(BLK_SYNC).negotiate()
m.op(5, bytes([0]) + struct.pack("<H", 16) + b"\xff" + struct.pack("<Q", 1 << 40) + b"\x00" +
     struct.pack("<I", 0x1000) + b"\x00" + struct.pack("<I", 0xFFFF0) + b"\x00")
m.driver_ok().notify(0).run().op(13)
write("mmio-transport-corpus", "rings-outside-memory", bytes(m.b))

# ---- vsock_packet_fuzz: [layer] then records ----------------------------------------
FIX_ALL = 0x0F  # addressing fixed up, port 1024, op % 8, len % 512


def packet(op, src_port=5000, length=0, flags=0, fwd_cnt=0):
    h = struct.pack("<QQIIIHHIII", 3, 2, src_port, 1024, length, 1, op, flags, 65536, fwd_cnt)
    return bytes([FIX_ALL]) + h


conn = bytearray([0]) + struct.pack("<IB", 4096, 0)
for op, length, flags in ((5, 100, 0), (7, 0, 0), (6, 0, 0), (5, 4000, 0), (4, 0, 1), (3, 0, 0)):
    conn += b"\x00" + packet(op, length=length, flags=flags) + struct.pack("<I", length)
    conn += b"\x01" + struct.pack("<I", 50)
conn += b"\x02" + struct.pack("<I", 1000) + b"\x03\x01"
write("vsock-packet-corpus", "connection-established", bytes(conn))
write("vsock-packet-corpus", "connection-connecting",
      bytes([0]) + struct.pack("<IB", 65536, 1) + b"\x00" + packet(2) + struct.pack("<I", 0) +
      b"\x00" + packet(5, length=10) + struct.pack("<I", 10))

dev = bytearray([1]) + b"\x01\x03"  # rx buffers
dev += b"\x00" + packet(1) + struct.pack("<H", 0)  # REQUEST to port 1024
dev += b"\x03\x00\x00" + b"\x02"  # the host process accepts; run
dev += b"\x00" + packet(5, length=5) + struct.pack("<H", 5) + b"hello" + b"\x02"
dev += b"\x03\x01\x00\x05world" + b"\x02" + b"\x01\x03" + b"\x02"
dev += b"\x00" + packet(7) + struct.pack("<H", 0) + b"\x02"
dev += b"\x00" + packet(4, flags=3) + struct.pack("<H", 0) + b"\x02"
dev += b"\x03\x0c\x00" + b"\x03\x01\x01\x0dCONNECT 5000\n" + b"\x02" + b"\x01\x03" + b"\x02"
dev += b"\x00" + packet(3) + struct.pack("<H", 0)
write("vsock-packet-corpus", "device-connection", bytes(dev))

# ---- net_header_fuzz: [how][acked u64] then (header, num_buffers) records -------------
def hdr(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack("<BBHHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, 0)


headers = [hdr(0, 0, 0, 0, 0, 0), hdr(1, 0, 0, 0, 34, 16), hdr(1, 1, 54, 1448, 34, 16),
           hdr(1, 4, 74, 1428, 54, 16), hdr(1, 0x81, 54, 1448, 34, 16), hdr(2, 3, 42, 1472, 0, 0)]
records = b"".join(h + struct.pack("<H", 1) for h in headers)
all_offloads = (1 << 0) | (1 << 1) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 15)
write("net-header-corpus", "all-offloads", b"\x00" + struct.pack("<Q", all_offloads | 1 << 32) + records)
write("net-header-corpus", "no-offloads", b"\x00" + struct.pack("<Q", 1 << 32) + records)
write("net-header-corpus", "csum-only", b"\x00" + struct.pack("<Q", 3 | 1 << 32) + records)

# ---- toml_config_fuzz: text ------------------------------------------------------------
with open(os.path.join(HERE, "..", "..", "configs", "default.toml")) as f:
    write("toml-config-corpus", "default", f.read())
write("toml-config-corpus", "everything", '''[boot-source]
kernel_image_path = "vmlinux"
initrd_path = "/boot/initrd"
boot_args = "console=ttyS0"

[machine-config]
vcpu_count = 2
mem_size_mib = 256
smt = false
huge_pages = "2M"
prefault = "background"
track_dirty_pages = false

[serial]
output = "file"
path = "serial.log"
input = true

[[drive]]
id = "rootfs"
path = "rootfs.ext4"
is_root_device = true
is_read_only = false

[[drive]]
drive_id = "data"
path_on_host = "data.img"

[[net]]
iface_id = "eth0"
host_dev_name = "tap0"
guest_mac = "06:00:ac:10:00:02"

[vsock]
vsock_id = "vsock0"
guest_cid = 3
uds_path = "v.sock"
''')
write("toml-config-corpus", "bad-types", '[machine-config]\nvcpu_count = "two"\nmem_size_mib = 1e9\n[[drive]]\nid = 1\n')

# ---- kernel_loader_fuzz: [mode][initrd KiB][cmdline length] then the image ----------
def elf(paddr=0x1000000, filesz=0x100, memsz=0x3000, entry=0x1000000, pvh_entry=None):
    out = bytearray(0x1000 + filesz)
    phnum = 2 if pvh_entry is not None else 1
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    out[0:64] = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    out[64:120] = struct.pack("<IIQQQQQQ", 1, 0, 0x1000, paddr, paddr, filesz, memsz, 0x1000)
    for i in range(filesz):
        out[0x1000 + i] = (i * 7 + 1) & 0xFF
    if pvh_entry is not None:
        out[0x800:0x814] = struct.pack("<III", 4, 4, 18) + b"Xen\x00" + struct.pack("<I", pvh_entry)
        out[120:176] = struct.pack("<IIQQQQQQ", 4, 0, 0x800, 0, 0, 20, 0, 4)
    return bytes(out)


def bzimage(setup_sects=4, kernel_bytes=0x400, init_size=0x100000, pref_address=0x1000000):
    offset = (setup_sects + 1) * 512
    out = bytearray(offset + kernel_bytes)
    out[0x1f1] = setup_sects
    struct.pack_into("<I", out, 0x1f4, kernel_bytes // 16)       # syssize
    struct.pack_into("<H", out, 0x1fe, 0xAA55)                    # boot_flag
    struct.pack_into("<I", out, 0x202, 0x53726448)                # "HdrS"
    struct.pack_into("<H", out, 0x206, 0x020F)                    # version
    out[0x211] = 0x01                                             # loadflags: LOADED_HIGH
    struct.pack_into("<I", out, 0x22C, 0x7FFFFFFF)                # initrd_addr_max
    struct.pack_into("<H", out, 0x236, 0x01)                      # xloadflags: XLF_KERNEL_64
    struct.pack_into("<I", out, 0x238, 2047)                      # cmdline_size
    struct.pack_into("<I", out, 0x260, init_size)
    struct.pack_into("<Q", out, 0x258, pref_address)
    for i in range(kernel_bytes):
        out[offset + i] = (i * 3 + 5) & 0xFF
    return bytes(out)


for mode, name in ((0, "buffer"), (1, "file"), (2, "file-batched")):
    write("kernel-loader-corpus", f"elf-{name}", bytes([mode, 4, 20]) + elf())
    write("kernel-loader-corpus", f"bzimage-{name}", bytes([mode, 4, 20]) + bzimage())
write("kernel-loader-corpus", "elf-pvh", bytes([0, 0, 8]) + elf(pvh_entry=0x1000040))


# ---- device_state_fuzz: [device: 0 blk, 1 vsock] then a saved transport ----------------
def queue_rings(q, size=16):
    desc = 0x10000 + q * 0x1000
    driver = desc + 16 * size
    device = (driver + 6 + 2 * size + 3) & ~3
    return size, desc, driver, device


def transport_state(device_type, features, queues, device_blob, active=True):
    status = 0xF if active else 0xB  # ACKNOWLEDGE | DRIVER | FEATURES_OK (| DRIVER_OK)
    body = struct.pack("<IIBIIQIIIH", device_type, status, 0, 0, 0, features, 0, 0, 0, queues)
    for q in range(queues):
        body += struct.pack("<HQQQB", *queue_rings(q), 1)
    body += bytes([1 if active else 0])
    if active:
        for q in range(queues):
            event_idx, indirect = (features >> 29) & 1, (features >> 28) & 1
            body += struct.pack("<HQQQBBHHHB", *queue_rings(q), event_idx, indirect, 3, 3, 3, 0)
    body += struct.pack("<I", len(device_blob)) + device_blob
    return struct.pack("<I", len(body)) + body


TRANSPORT_FEATURES = (1 << 28) | (1 << 29) | (1 << 32)
BLK_STATE = struct.pack("<QBI", 128, 0, 5) + b"disk0"  # capacity in sectors, read-only, id
blk_features = TRANSPORT_FEATURES | (1 << 2) | (1 << 6) | (1 << 9)
write("device-state-corpus", "blk-active", bytes([0]) + transport_state(2, blk_features, 1, BLK_STATE))
write("device-state-corpus", "blk-features-ok", bytes([0]) + transport_state(2, blk_features, 1, BLK_STATE, False))
write("device-state-corpus", "vsock-active",
      bytes([1]) + transport_state(19, TRANSPORT_FEATURES, 3, struct.pack("<Q", 3)))
