//! Prometheus' text exposition format 0.0.4, written as Go's client_golang
//! writes it: `# HELP`, `# TYPE`, then samples with label names sorted
//! (`le` last), numbers in Go's shortest `%g` form.

use std::fmt::Write;

#[derive(Default)]
pub struct Text {
    out: String,
}

/// Labels of one sample, in the order they are printed.
pub type Labels<'a> = [(&'a str, &'a str)];

/// One histogram series: its labels, its bounds, and (cumulative counts, count, sum).
pub type Series<'a> = (&'a Labels<'a>, &'a [f64], (Vec<u64>, u64, f64));

impl Text {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &Labels<'_>, extra: Option<(&str, &str)>, value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            let mut first = true;
            for (k, v) in labels.iter().copied().chain(extra) {
                if !first {
                    self.out.push(',');
                }
                first = false;
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counter_family(name, help, &[(Vec::new(), value)]);
    }

    pub fn counter_family(&mut self, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, u64)]) {
        self.header(name, help, "counter");
        for (labels, value) in samples {
            self.sample(name, labels, None, &go_uint(*value));
        }
    }

    pub fn counter_float(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "counter");
        self.sample(name, &[], None, &go_float(value));
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, &[], None, &go_float(value));
    }

    pub fn gauge_int(&mut self, name: &str, help: &str, value: u64) {
        self.gauge_labelled(name, help, &[], value);
    }

    /// A gauge vector's series (none printed at all when `samples` is empty, as Go omits an unused vector).
    pub fn gauge_family(&mut self, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, u64)]) {
        if samples.is_empty() {
            return;
        }
        self.header(name, help, "gauge");
        for (labels, value) in samples {
            self.sample(name, labels, None, &go_uint(*value));
        }
    }

    pub fn gauge_labelled(&mut self, name: &str, help: &str, labels: &Labels<'_>, value: u64) {
        self.header(name, help, "gauge");
        self.sample(name, labels, None, &go_uint(value));
    }

    /// One histogram family: per series its labels, bounds and
    /// (cumulative counts, count, sum in seconds).
    pub fn histogram_family(&mut self, name: &str, help: &str, series: &[Series<'_>]) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (labels, bounds, (cumulative, count, sum)) in series {
            for (bound, n) in bounds.iter().zip(cumulative) {
                self.sample(&bucket, labels, Some(("le", &go_float(*bound))), &go_uint(*n));
            }
            self.sample(&bucket, labels, Some(("le", "+Inf")), &go_uint(*count));
            self.sample(&format!("{name}_sum"), labels, None, &go_float(*sum));
            self.sample(&format!("{name}_count"), labels, None, &go_uint(*count));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n").replace('"', "\\\"")
}

fn go_uint(v: u64) -> String {
    go_float(v as f64)
}

/// Go's strconv.FormatFloat(v, 'g', -1, 64): the shortest digits that read
/// back as `v`, in exponent form when the exponent is below -4 or at least 6
/// (client_golang's expfmt writes values with this).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: "2.147483648e9".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}`'s exponent is a number");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(2_147_483_648.0), "2.147483648e+09");
        assert_eq!(go_float(20480.0), "20480");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.000_05), "5e-05");
        assert_eq!(go_float(1.844_674_407_370_955_2e19), "1.8446744073709552e+19");
        assert_eq!(go_float(0.06), "0.06");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(999_999.0), "999999");
        assert_eq!(go_float(1e6), "1e+06");
    }
}
