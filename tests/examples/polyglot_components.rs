//! Builds the Python (componentize-py) and JavaScript (componentize-js) test connectors when
//! their sources changed, and prints their paths, one per line: for `tests/load/polyglot.sh`.

fn main() {
    let built = plugboard_tests::python_component()
        .and_then(|python| plugboard_tests::js_component().map(|js| (python, js)));
    match built {
        Ok((python, js)) => println!("{}\n{}", python.display(), js.display()),
        Err(e) => {
            eprintln!("could not build the test components: {e}");
            std::process::exit(1);
        }
    }
}
