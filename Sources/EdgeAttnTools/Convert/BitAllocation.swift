import EAKernels
import EdgeAttn
import Foundation

/// `--target-bpw`: which layer matrices get 4 bits, measured rather than hand-picked.
///
/// The candidates are the layer matrices whose target is the default W2 (a `--type` override pins a
/// tensor). They are probed in units of a layer's (k, v), (q, output), (gate, up) and down
/// projections: for each unit, the source model with only that unit's matrices at 2 bits runs
/// over the probe tokens, and the unit's sensitivity is the KL divergence of its next-token
/// distribution from the source model's. Units are then upgraded to two-plane 4-bit (same group)
/// in order of KL removed per added bit, while the linear layers stay within the target; a unit too
/// large for what is left is skipped for smaller ones after it. Sensitivities are assumed to add up (the
/// usual first-order assumption of mixed-precision search); one probe per unit keeps the cost at
/// about one forward pass of the model per layer.
struct BitAllocation {
    var upgraded: [String] = []  // tensor names given 4 bits
    var bitsPerWeight = 0.0      // of the linear layers, exactly as written
    var units: [(name: String, kl: Double, addedBits: Int, upgraded: Bool)] = []
}

/// The runtime's view of a converted matrix (the bytes must outlive it).
func runtimeMatrix(_ bytes: [UInt8], _ target: TargetType, _ p: ConvertPlan,
                   owned: inout [UnsafeMutableRawPointer]) -> WeightMatrix {
    let rows = p.dims[1], cols = p.dims[0], st = target.storage(rows: rows, cols: cols)
    let m = UnsafeMutableRawPointer.allocate(byteCount: max(64, bytes.count), alignment: 64)
    owned.append(m)
    bytes.withUnsafeBytes { m.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    var group = 0, planes = 1
    if case .w2(let g) = target { group = g }
    if case .w4g(let g) = target { group = g; planes = 2 }
    return WeightMatrix(type: group > 0 ? Int32(EAK_W2) : Int32(st.type), data: UnsafeRawPointer(m), rows: rows, cols: cols,
                        rowBytes: st.bytes / rows, group: group, rotation: p.rotate, planes: planes)
}

func allocateBits(_ model: Model, _ plans: inout [ConvertPlan], target bpw: Double, chunks: [[Int32]],
                  _ o: ConvertOptions, log: (String) -> Void) throws -> BitAllocation {
    let hp = model.hp, d = hp.nEmbd, n = calibrationChunk, f = model.file
    func bits(_ t: TargetType, _ p: ConvertPlan) -> Int { t.storage(rows: p.dims[1], cols: p.dims[0]).bytes * 8 }
    func upgrade(_ t: TargetType?) -> TargetType? {
        if case .w2(let g)? = t { return .w4g(g) }
        return nil
    }
    var total = 0, weights = 0
    for p in plans where p.isLinear { total += bits(p.target!, p); weights += p.dims[0] * p.dims[1] }
    let budget = Int((bpw * Double(weights)).rounded(.down))
    if total > budget {
        if o.targetBpwIsDefault {
            log("bit allocation skipped: the linear layers take \(String(format: "%.3f", Double(total) / Double(weights))) bits/weight before any 4-bit matrix, over the default target \(bpw)\n")
            return BitAllocation(bitsPerWeight: Double(total) / Double(weights))
        }
        throw ConvertError("--target-bpw \(bpw): the linear layers need \(String(format: "%.3f", Double(total) / Double(weights))) "
            + "bits/weight before any 4-bit matrix; lower --group's overhead or raise the target")
    }
    // Units: (layer, matrices) of the candidates.
    let kinds: [[String]] = [["attn_k", "attn_v"], ["attn_q", "attn_output"], ["ffn_gate", "ffn_up"], ["ffn_down"]]
    var units: [(layer: Int, plans: [Int])] = []
    for l in 0..<hp.nLayer {
        for k in kinds {
            let idx = plans.indices.filter { i in
                let p = plans[i], parts = p.t.name.split(separator: ".")
                return p.isLinear && !p.pinned && upgrade(p.target) != nil && parts.count >= 3 && parts[1] == Substring(String(l))
                    && k.contains(String(parts[2]))
            }
            if !idx.isEmpty { units.append((l, idx)) }
        }
    }
    var result = BitAllocation()
    if units.isEmpty { result.bitsPerWeight = Double(total) / Double(weights); return result }

    // The source model's hidden states at every layer's input, over the probe chunks.
    let probe = Array(chunks.prefix(2)), nc = probe.count
    let states = UnsafeMutablePointer<Float>.allocate(capacity: (hp.nLayer + 1) * nc * n * d)
    let work = UnsafeMutablePointer<Float>.allocate(capacity: n * d)
    let rowsPer = hp.nVocab > 100_000 ? 32 : 128  // scored positions per chunk (the head is the cost)
    let picked = UnsafeMutablePointer<Float>.allocate(capacity: rowsPer * d)
    var owned: [UnsafeMutableRawPointer] = []
    defer {
        states.deallocate()
        work.deallocate()
        picked.deallocate()
        for m in owned { m.deallocate() }
    }
    func at(_ l: Int, _ c: Int) -> UnsafeMutablePointer<Float> { states + (l * nc + c) * n * d }
    let cal = Calibration()
    let source = try calibrationSession(model)
    source.observer = { cal.observe($0, $1, $2, $3, $4) }
    for c in 0..<nc { probe[c].withUnsafeBufferPointer { model.embed($0, into: at(0, c)) } }
    for l in 0..<hp.nLayer {
        for c in 0..<nc {
            at(l + 1, c).update(from: at(l, c), count: n * d)
            do { try source.runLayers(on: at(l + 1, c), n: n, layers: l..<(l + 1)) } catch {
                throw ConvertError("bit allocation, layer \(l): \(error.message)")
            }
        }
    }
    source.observer = nil
    // Reference log-probabilities at every (n / rowsPer)-th position after the first quarter.
    let stride = n / rowsPer, nv = hp.nVocab
    var refLogP = [Float](repeating: 0, count: nc * rowsPer * nv)
    func logits(_ s: Session, _ final: UnsafePointer<Float>) throws -> UnsafePointer<Float> {
        for r in 0..<rowsPer { (picked + r * d).update(from: final + (r * stride + stride - 1) * d, count: d) }
        do { return try s.headLogits(of: picked, n: rowsPer) } catch { throw ConvertError("bit allocation: \(error.message)") }
    }
    func logSoftmax(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        var mx = x[0]
        for i in 1..<nv where x[i] > mx { mx = x[i] }
        var s = 0.0
        for i in 0..<nv { s += exp(Double(x[i] - mx)) }
        let lse = mx + Float(Foundation.log(s))
        for i in 0..<nv { out[i] = x[i] - lse }
    }
    for c in 0..<nc {
        let lg = try logits(source, at(hp.nLayer, c))
        refLogP.withUnsafeMutableBufferPointer { rp in
            for r in 0..<rowsPer { logSoftmax(lg + r * nv, rp.baseAddress! + (c * rowsPer + r) * nv) }
        }
    }
    // One probe per unit: that unit at 2 bits (imatrix-weighted search on the probe statistics:
    // quick, and close enough to rank units), every other matrix the source's.
    var q = o
    q.quantizer = .imatrix
    q.refine = 0
    q.floatTarget = 0
    var lp = [Float](repeating: 0, count: nv)
    var scored: [(unit: Int, kl: Double, added: Int)] = []
    let t0 = Date()
    for (ui, u) in units.enumerated() {
        var mats: [String: WeightMatrix] = [:]
        for i in u.plans {
            let p = plans[i]
            let conv = try quantizeTensor(f, p, p.target!, q, cal: cal, site: calibrationSite(p.t.name).map { $0.0 * 4 + $0.1 })
            mats[String(p.t.name.split(separator: ".")[2])] = runtimeMatrix(conv.bytes, p.target!, p, owned: &owned)
        }
        let s = try calibrationSession(model.replacingMatrices(layer: u.layer, mats))
        var kl = 0.0
        for c in 0..<nc {
            work.update(from: at(u.layer, c), count: n * d)
            do { try s.runLayers(on: work, n: n, layers: u.layer..<hp.nLayer) } catch {
                throw ConvertError("bit allocation probe: \(error.message)")
            }
            let lg = try logits(s, work)
            for r in 0..<rowsPer {
                lp.withUnsafeMutableBufferPointer { logSoftmax(lg + r * nv, $0.baseAddress!) }
                let base = (c * rowsPer + r) * nv
                var k = 0.0
                for i in 0..<nv { let a = refLogP[base + i]; k += Double(exp(a)) * Double(a - lp[i]) }
                kl += k
            }
        }
        for m in owned { m.deallocate() }
        owned.removeAll()
        let added = u.plans.reduce(0) { $0 + bits(upgrade(plans[$1].target)!, plans[$1]) - bits(plans[$1].target!, plans[$1]) }
        scored.append((ui, kl / Double(nc * rowsPer), added))
        if o.progress {
            let el = Date().timeIntervalSince(t0), left = el / Double(ui + 1) * Double(units.count - ui - 1)
            log("\rbit allocation: probed \(ui + 1)/\(units.count) units, about \(Int(left)) s left   ")
        }
    }
    if o.progress { log("\n") }
    // Greedy by KL removed per added bit; a unit that no longer fits is skipped, not a stop.
    var order = scored.sorted { a, b in a.kl / Double(max(1, a.added)) > b.kl / Double(max(1, b.added)) }
    order = order.filter { $0.added > 0 }
    var chosen = Set<Int>()
    for s in order where total + s.added <= budget {
        total += s.added
        chosen.insert(s.unit)
        for i in units[s.unit].plans {
            plans[i].target = upgrade(plans[i].target)
            result.upgraded.append(plans[i].t.name)
        }
    }
    result.bitsPerWeight = Double(total) / Double(weights)
    result.units = scored.map { s in
        let u = units[s.unit]
        let names = u.plans.map { String(plans[$0].t.name.split(separator: ".")[2]) }.joined(separator: "+")
        return ("blk.\(u.layer).\(names)", s.kl, s.added, chosen.contains(s.unit))
    }
    return result
}
